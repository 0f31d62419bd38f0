//! Wall-clock time as the Matrix wire formats count it.

/// Milliseconds since the Unix epoch (`origin_server_ts`, `last_active_ago`, expiries). A clock
/// set before 1970 reads as 0 rather than failing a request.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
