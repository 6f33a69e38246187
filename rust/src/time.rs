//! Event time: `i64` milliseconds since the Unix epoch, UTC.
//!
//! Event times accepted by the engine lie in [`MIN_EVENT_TIME`, `MAX_EVENT_TIME`] and durations
//! in `[0, MAX_DURATION]`; within these bounds every sum the window code forms
//! (`end - 1 + lateness`, `t - delay`, `t + gap`) stays far from `i64` overflow.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// Earliest accepted event time: the epoch itself.
pub const MIN_EVENT_TIME: Millis = 0;
/// Latest accepted event time: 9999-12-31T23:59:59.999Z.
pub const MAX_EVENT_TIME: Millis = 253_402_300_799_999;
/// Longest accepted duration (window size, slide, gap, lateness, out-of-orderness): 100 years.
pub const MAX_DURATION: Millis = 100 * 366 * 86_400_000;
/// Watermark before any event: nothing is complete yet.
pub const WATERMARK_START: Millis = i64::MIN;
/// Watermark at end of input: everything is complete.
pub const WATERMARK_END: Millis = i64::MAX;

/// Whether `t` is an acceptable event time.
///
/// # Examples
/// ```
/// assert!(fraudstream::time::is_valid_event_time(1_700_000_000_000));
/// assert!(!fraudstream::time::is_valid_event_time(-1));
/// ```
#[must_use]
pub fn is_valid_event_time(t: Millis) -> bool {
    (MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(&t)
}

/// Validates a duration named `what`, allowing zero when `allow_zero`.
pub(crate) fn check_duration(what: &str, d: Millis, allow_zero: bool) -> crate::CoreResult<()> {
    let low = i64::from(!allow_zero);
    if d < low || d > MAX_DURATION {
        let bound = if allow_zero { ">= 0" } else { "> 0" };
        return Err(crate::CoreError::Config(format!(
            "{what} must be {bound} and at most {MAX_DURATION} ms, got {d}"
        )));
    }
    Ok(())
}

/// Greatest common divisor of two positive durations.
#[must_use]
pub fn gcd(mut a: Millis, mut b: Millis) -> Millis {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_of_window_sizes() {
        assert_eq!(gcd(300_000, 60_000), 60_000);
        assert_eq!(gcd(10, 4), 2);
        assert_eq!(gcd(7, 7), 7);
    }

    #[test]
    fn durations_are_bounded() {
        assert!(check_duration("size", 0, false).is_err());
        assert!(check_duration("lateness", 0, true).is_ok());
        assert!(check_duration("size", MAX_DURATION + 1, false).is_err());
        assert!(check_duration("size", -5, true).is_err());
    }

    #[test]
    fn event_time_range() {
        assert!(is_valid_event_time(0));
        assert!(is_valid_event_time(MAX_EVENT_TIME));
        assert!(!is_valid_event_time(MAX_EVENT_TIME + 1));
    }
}
