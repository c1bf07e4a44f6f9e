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
        /// Where messages are kept: a SQLite file (the default, `hubbub.db`) or a
        /// `postgres://user:password@host/db` URL; the same as `database` in [hub] or
        /// HUBBUB_DATABASE.
        #[arg(long = "database", value_name = "PATH|URL")]
        database: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// Write a consistent copy of the SQLite database to FILE, while the server runs.
        /// Restoring is starting a server on that file. (PostgreSQL: use pg_dump.)
        Backup { file: std::path::PathBuf },
        /// Accounts from the command line, for a server whose admin is lost: `create` an
        /// admin account, `promote` an account to admin, or `reset-password` (which ends its
        /// sessions). Prints the new password where there is one.
        Admin {
            #[command(subcommand)]
            action: AdminAction,
        },
    }

    #[derive(clap::Subcommand)]
    enum AdminAction {
        Create { name: String },
        Promote { name: String },
        ResetPassword { name: String },
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
            if let Some(database) = args.database {
                config.hub.database = database;
            }
            config
        }
        Err(e) => {
            eprintln!("hubbub: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Admin { action }) = args.command {
        use hubbub::server::accounts::{AdminAction as Act, admin};
        let (act, name) = match action {
            AdminAction::Create { name } => (Act::Create, name),
            AdminAction::Promote { name } => (Act::Promote, name),
            AdminAction::ResetPassword { name } => (Act::ResetPassword, name),
        };
        return match admin(&config.hub.database, act, &name).await {
            Ok(said) => {
                println!("hubbub: {said}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hubbub: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Backup { file }) = args.command {
        use hubbub::server::storage::{Location, backup_sqlite};
        return match Location::parse(&config.hub.database) {
            Location::Postgres(_) => {
                eprintln!("hubbub: the database is PostgreSQL: back it up with pg_dump");
                ExitCode::from(2)
            }
            Location::Sqlite(db) => match backup_sqlite(&db, &file) {
                Ok(()) => {
                    println!("hubbub: {} backed up to {}", db.display(), file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hubbub: {e}");
                    ExitCode::FAILURE
                }
            },
        };
    }
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
