//! One write statement run the same way on either database: its parameters as [`Arg`]s,
//! which both drivers can bind. Used by the account and moderation queries, which are single
//! statements differing only in SQL and parameters. (The message log's batched writes have
//! their own code in `sqlite` and `postgres`.) Statements number their parameters `$1`,
//! `$2`… in order of first use: PostgreSQL's syntax, which SQLite binds the same way.

use super::postgres::unreachable;
use super::sqlite::with;
use super::{Backend, Storage, StoreError};

/// A statement parameter.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Text(String),
    Int(i64),
    Bool(bool),
    Null,
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}

impl From<bool> for Arg {
    fn from(b: bool) -> Self {
        Arg::Bool(b)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
            Arg::Bool(b) => b.to_sql(),
            Arg::Null => rusqlite::types::Null.to_sql(),
        }
    }
}

impl tokio_postgres::types::ToSql for Arg {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Int(i) => i.to_sql(ty, out),
            Arg::Bool(b) => b.to_sql(ty, out),
            Arg::Null => Ok(tokio_postgres::types::IsNull::Yes),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <String as tokio_postgres::types::ToSql>::accepts(ty)
            || <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <bool as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl Storage {
    /// Runs one write statement on the writer (SQLite) or a pooled connection (PostgreSQL);
    /// returns how many rows it changed. `doing` names it in the error.
    pub(super) async fn run(
        &self,
        doing: &str,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<u64, StoreError> {
        match &self.log {
            Backend::Sqlite(db) => {
                with(&db.writer, doing, move |conn| {
                    conn.execute(sql, rusqlite::params_from_iter(args.iter()))
                        .map(|n| n as u64)
                })
                .await
            }
            Backend::Postgres(db) => {
                let client = db.pool.get().await.map_err(unreachable)?;
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                    .iter()
                    .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client
                    .execute(sql, &params)
                    .await
                    .map_err(|e| StoreError::query(doing, e))
            }
        }
    }
}
