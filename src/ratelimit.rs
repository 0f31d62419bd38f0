//! Rate limits for the endpoints that attract guessing and abuse: per address for login and
//! registration, per user for media uploads and sent events. Answers `M_LIMIT_EXCEEDED` with
//! `retry_after_ms`.
//!
//! Limits are per process: with several Hearth processes behind a balancer, each enforces
//! its own budget. The per-user overrides admins set are read from the database at every
//! check, so a change applies at once in every process.

use crate::config::RateLimitConfig;
use crate::db::admin_users::RateLimitOverride;
use crate::error::{Error, Result};
use crate::users::{ClientInfo, Session};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Login,
    Register,
    /// An upload or a `create` of a media id; keyed by user, not address.
    MediaUpload,
    /// An event a user sends (message, state, redaction); keyed by user, overridable per user.
    Message,
}

pub struct RateLimits {
    enabled: bool,
    login: DefaultKeyedRateLimiter<String>,
    register: DefaultKeyedRateLimiter<String>,
    media_upload: DefaultKeyedRateLimiter<String>,
    message: DefaultKeyedRateLimiter<String>,
    /// Users with an admin's override, each with its own budget and the override it was made
    /// for (a changed override starts a fresh budget).
    overridden: Mutex<HashMap<String, (RateLimitOverride, DefaultDirectRateLimiter)>>,
}

fn quota(per_second: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            enabled: config.enabled,
            login: DefaultKeyedRateLimiter::keyed(quota(config.login_per_second, config.login_burst)),
            register: DefaultKeyedRateLimiter::keyed(quota(config.registration_per_second, config.registration_burst)),
            media_upload: DefaultKeyedRateLimiter::keyed(quota(
                config.media_upload_per_second,
                config.media_upload_burst,
            )),
            message: DefaultKeyedRateLimiter::keyed(quota(config.message_per_second, config.message_burst)),
            overridden: Mutex::default(),
        }
    }

    pub fn check(&self, action: Action, client: &ClientInfo) -> Result<()> {
        self.check_key(action, client.ip.clone().unwrap_or_default())
    }

    /// Like [`RateLimits::check`], for limits kept per user.
    pub fn check_user(&self, action: Action, user_id: &ruma::UserId) -> Result<()> {
        self.check_key(action, user_id.to_string())
    }

    fn check_key(&self, action: Action, key: String) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let limiter = match action {
            Action::Login => &self.login,
            Action::Register => &self.register,
            Action::MediaUpload => &self.media_upload,
            Action::Message => &self.message,
        };
        limiter.check_key(&key).map_err(limit_exceeded)
    }

    /// Checks an event the session's user sends against their budget: the server's, or the one
    /// an admin set for them (0 messages per second: not limited at all), read with the session.
    pub fn check_message(&self, session: &Session) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let user_id = &session.user_id;
        let Some(custom) = session.message_limit else {
            return self.check_key(Action::Message, user_id.to_string());
        };
        if custom.messages_per_second <= 0 {
            return Ok(());
        }
        let mut overridden = self.overridden.lock().map_err(|_| Error::internal("rate limiter lock poisoned"))?;
        let entry = overridden.entry(user_id.to_string()).or_insert_with(|| (custom, direct(custom)));
        if entry.0 != custom {
            *entry = (custom, direct(custom));
        }
        entry.1.check().map_err(limit_exceeded)
    }

    /// Forgets addresses whose budget is full again, so memory stays bounded.
    pub fn prune(&self) {
        self.login.retain_recent();
        self.register.retain_recent();
        self.media_upload.retain_recent();
        self.message.retain_recent();
        // Overridden budgets are few (one per user an admin picked); they are rebuilt from the
        // override read with the next session that needs it.
        if let Ok(mut overridden) = self.overridden.lock() {
            overridden.clear();
        }
    }
}

fn direct(custom: RateLimitOverride) -> DefaultDirectRateLimiter {
    let burst = u32::try_from(custom.burst_count).unwrap_or(0);
    DefaultDirectRateLimiter::direct(quota(f64::from(custom.messages_per_second), burst))
}

fn limit_exceeded(not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Error {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    // Round up so a client that waits exactly this long is let through.
    Error::limit_exceeded(wait.max(Duration::from_millis(1)) + Duration::from_millis(1))
}
