//! The hubbub server binary: reads the settings, binds, serves until SIGTERM or Ctrl-C.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    use hubbub::server::{self, config::Config};
    use std::process::ExitCode;

    /// hubbub: self-hosted real-time group chat.
    #[derive(Parser)]
    #[command(version, about)]
    struct Args {
        /// The settings file ([site] and [hub] tables).
        #[arg(long, env = "HUBBUB_CONFIG", default_value = "Leptos.toml")]
        config: std::path::PathBuf,
        /// Run as one node of a cluster sharing this Redis (e.g. `redis://127.0.0.1:6379/`);
        /// the same as `redis-url` in [hub] or HUBBUB_REDIS_URL. Without it: one node with
        /// its embedded history, no Redis needed.
        #[arg(long = "redis", value_name = "URL")]
        redis: Option<String>,
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hubbub=info".into()),
        )
        .init();
    let args = Args::parse();
    let config = match Config::load(&args.config, std::env::vars()) {
        Ok(mut config) => {
            if args.redis.is_some() {
                config.hub.redis_url = args.redis;
            }
            config
        }
        Err(e) => {
            eprintln!("hubbub: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = config.site.site_addr;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("hubbub: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Ok(local) = listener.local_addr() {
        // Printed on stdout in this exact form so scripts and tests can find the port.
        println!("hubbub listening on http://{local}");
    }
    match server::serve(listener, config, server::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubbub: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser half is a library (`hydrate`); this binary only exists with `ssr`.
}
