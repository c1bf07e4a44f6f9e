//! `typing`: tells the room this user is typing, once; repeats only push the end back.

use super::*;

pub(super) async fn typing(hub: &Hub, session: &mut Session) -> Reply {
    if session.typing_until.is_none() {
        hub.typing(&session.room, &session.user, true).await;
    }
    let timeout = Duration::from_millis(hub.config.typing_timeout_ms);
    session.typing_until = Some(tokio::time::Instant::now() + timeout);
    Reply::Done
}
