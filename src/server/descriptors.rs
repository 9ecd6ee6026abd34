//! File descriptors: raising the process's soft `RLIMIT_NOFILE` to its hard limit at start, and
//! budgeting what it allows, so connections can never take the descriptors the storage needs.
//!
//! Budget: `limit - reserve` descriptors are shared by the three listeners' connections; the
//! reserve is kept for everything else (segment logs and indexes, topic and group files, the
//! listening sockets, the runtime). The reserve is configured (`fd_reserve`) or, when 0, derived
//! as a quarter of the limit but at least [`MIN_RESERVE`]. When the configured connection limits
//! add up to more than the budget, each is lowered in proportion (never below 1) and a warning
//! says so.

use std::io;

/// The least a derived reserve keeps for storage and the rest of the process.
pub const MIN_RESERVE: u64 = 128;

/// The soft and hard descriptor limits (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

// `rlim_t` is `u64` on Linux.
fn to_option(v: libc::rlim_t) -> Option<u64> {
    (v != libc::RLIM_INFINITY).then_some(v)
}

#[allow(unsafe_code)]
fn get() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        Ok(lim)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[allow(unsafe_code)]
fn set(lim: &libc::rlimit) -> io::Result<()> {
    // SAFETY: `lim` is a valid rlimit; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft descriptor limit to the hard limit, and returns the limits now in force.
/// Failing to raise it is not fatal: the limit stays and the budget is made within it.
///
/// # Errors
/// The limits cannot be read.
pub fn raise_nofile_limit() -> io::Result<NofileLimit> {
    let mut lim = get()?;
    let before = lim.rlim_cur;
    if lim.rlim_cur != lim.rlim_max {
        let mut raised = lim;
        raised.rlim_cur = lim.rlim_max;
        match set(&raised) {
            Ok(()) => lim = raised,
            Err(e) => tracing::warn!(
                soft = ?to_option(before),
                hard = ?to_option(lim.rlim_max),
                error = %e,
                "could not raise the open-file limit to the hard limit"
            ),
        }
    }
    let now = NofileLimit {
        soft: to_option(lim.rlim_cur),
        hard: to_option(lim.rlim_max),
    };
    tracing::info!(
        before = ?to_option(before),
        soft = ?now.soft,
        hard = ?now.hard,
        "open-file limit (RLIMIT_NOFILE)"
    );
    Ok(now)
}

/// The descriptors kept out of the connection budget: `configured`, or when 0, a quarter of the
/// limit but at least [`MIN_RESERVE`].
pub fn reserve_for(limit: u64, configured: u64) -> u64 {
    if configured > 0 {
        configured
    } else {
        (limit / 4).max(MIN_RESERVE)
    }
}

/// Connection limits that fit in `limit - reserve` descriptors: `wanted` unchanged when they fit,
/// else each lowered in proportion (at least 1; 0, a listener turned off, stays 0). `limit`
/// `None` (unlimited) keeps `wanted`.
pub fn budget<const N: usize>(limit: Option<u64>, reserve: u64, wanted: [usize; N]) -> [usize; N] {
    let Some(limit) = limit else {
        return wanted;
    };
    let available = limit.saturating_sub(reserve);
    let total: u128 = wanted.iter().map(|&w| w as u128).sum();
    if total <= u128::from(available) {
        return wanted;
    }
    wanted.map(|w| match w {
        0 => 0,
        w => ((w as u128 * u128::from(available) / total) as usize).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_fit_stay() {
        assert_eq!(budget(Some(65_536), 1024, [1024, 1024, 1024]), [1024; 3]);
        assert_eq!(budget(None, 1024, [7, 8]), [7, 8]);
    }

    #[test]
    fn limits_that_do_not_fit_shrink_in_proportion() {
        let got = budget(Some(1024), reserve_for(1024, 0), [1024, 1024, 1024]);
        assert_eq!(got, [256; 3]);
        assert!(got.iter().sum::<usize>() as u64 <= 1024 - 256);
        let got = budget(Some(256), reserve_for(256, 0), [1024, 512, 512]);
        assert_eq!(got, [64, 32, 32]);
        assert_eq!(budget(Some(100), 200, [10, 10]), [1, 1]);
        assert_eq!(budget(Some(256), 128, [1024, 0, 1024]), [64, 0, 64]);
    }

    #[test]
    fn the_reserve_is_configured_or_derived() {
        assert_eq!(reserve_for(1024, 0), 256);
        assert_eq!(reserve_for(256, 0), MIN_RESERVE);
        assert_eq!(reserve_for(1 << 20, 0), 1 << 18);
        assert_eq!(reserve_for(1024, 10), 10);
    }

    #[test]
    fn raising_keeps_the_soft_limit_within_the_hard_one() {
        let now = raise_nofile_limit().unwrap();
        if let (Some(s), Some(h)) = (now.soft, now.hard) {
            assert!(s <= h);
        }
    }
}
