//! Time for the scheduler: the wall clock in production, a hand-moved clock in tests, so
//! "fires at 02:00" is tested without waiting for 02:00.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A boxed future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Now, and sleeping until a time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `deadline` or somewhat earlier (callers re-check `now`).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep;
}

/// The system clock. Sleeps are capped at a minute so a wall-clock jump (NTP, a suspended VM)
/// is noticed within one.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        let wait = (deadline - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(std::time::Duration::from_secs(60));
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock to `t` (never backwards).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_if_modified(|now| {
            let moved = t > *now;
            if moved {
                *now = t;
            }
            moved
        });
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let t = *self.now.borrow() + by;
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}
