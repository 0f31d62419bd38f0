//! Rate limits for the endpoints that attract guessing and abuse: per address for login and
//! registration, per user for media uploads. Answers `M_LIMIT_EXCEEDED` with `retry_after_ms`.
//!
//! Limits are per process: with several Hearth processes behind a balancer, each enforces
//! its own budget.

use crate::config::RateLimitConfig;
use crate::error::{Error, Result};
use crate::users::ClientInfo;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Action {
    Login,
    Register,
    /// An upload or a `create` of a media id; keyed by user, not address.
    MediaUpload,
}

pub struct RateLimits {
    enabled: bool,
    login: DefaultKeyedRateLimiter<String>,
    register: DefaultKeyedRateLimiter<String>,
    media_upload: DefaultKeyedRateLimiter<String>,
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
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Round up so a client that waits exactly this long is let through.
            Error::limit_exceeded(wait.max(Duration::from_millis(1)) + Duration::from_millis(1))
        })
    }

    /// Forgets addresses whose budget is full again, so memory stays bounded.
    pub fn prune(&self) {
        self.login.retain_recent();
        self.register.retain_recent();
        self.media_upload.retain_recent();
    }
}
