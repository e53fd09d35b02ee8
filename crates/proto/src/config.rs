//! [`FrameLimits`]: the size limit a peer applies to the frames it reads and writes, and the
//! protocol constants that bound it.
//!
//! The limit is checked against a frame header's length field before a single byte of the body
//! is buffered or allocated (see [`crate::decode_frame`]); it is clamped to
//! [`FRAME_BYTES_HARD_MAX`] whatever the configuration says.

use crate::error::{FrameError, Result};
use crate::frame::FRAME_HEADER_LEN;

/// The protocol version spoken by this crate, sent in [`crate::Hello`] and answered in
/// [`crate::Welcome`]. See `docs/protocol.md`, "Version history".
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version this crate can speak.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// The largest frame (header and body) any configuration may allow: 128 MiB, twice the largest
/// weir-log frame, so that one maximal log frame always fits in a read response.
pub const FRAME_BYTES_HARD_MAX: u32 = 128 * 1024 * 1024;

/// The smallest `frame_bytes_max` a configuration may set: room for a handshake and an error.
pub const FRAME_BYTES_MIN: u32 = 4 * 1024;

/// The default `frame_bytes_max`: 16 MiB.
pub const FRAME_BYTES_DEFAULT: u32 = 16 * 1024 * 1024;

const _: () = assert!(FRAME_HEADER_LEN < FRAME_BYTES_MIN as usize);
const _: () = assert!(FRAME_BYTES_MIN <= FRAME_BYTES_DEFAULT);
const _: () = assert!(FRAME_BYTES_DEFAULT <= FRAME_BYTES_HARD_MAX);

/// The frame size a peer accepts (when decoding) and produces (when encoding).
///
/// Each side has its own: the node announces its limit in [`crate::Welcome`], and a client
/// must not send frames larger than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameLimits {
    /// The largest frame, header included, in bytes. Default 16 MiB
    /// ([`FRAME_BYTES_DEFAULT`]); between [`FRAME_BYTES_MIN`] and [`FRAME_BYTES_HARD_MAX`].
    pub frame_bytes_max: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            frame_bytes_max: FRAME_BYTES_DEFAULT,
        }
    }
}

impl FrameLimits {
    /// Limits with the given `frame_bytes_max`, validated.
    ///
    /// # Errors
    /// [`FrameError::InvalidConfig`] if it is out of bounds (see [`FrameLimits::validate`]).
    pub fn new(frame_bytes_max: u32) -> Result<FrameLimits> {
        let limits = FrameLimits { frame_bytes_max };
        limits.validate()?;
        Ok(limits)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`FrameError::InvalidConfig`] naming the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if !(FRAME_BYTES_MIN..=FRAME_BYTES_HARD_MAX).contains(&self.frame_bytes_max) {
            return Err(FrameError::InvalidConfig {
                field: "frame_bytes_max",
                reason: format!(
                    "must be between {FRAME_BYTES_MIN} and {FRAME_BYTES_HARD_MAX} bytes, not {}",
                    self.frame_bytes_max
                ),
            });
        }
        Ok(())
    }

    /// The limit actually enforced: `frame_bytes_max` clamped to the protocol's bounds, so an
    /// unvalidated value can neither disable the check nor make every frame too large.
    pub(crate) fn effective_frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
            .clamp(FRAME_BYTES_MIN, FRAME_BYTES_HARD_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_16_mib() {
        let limits = FrameLimits::default();
        assert_eq!(limits.frame_bytes_max, 16 << 20);
        assert!(limits.validate().is_ok());
    }

    #[test]
    fn out_of_bounds_limits_name_the_field() {
        for bad in [0, FRAME_BYTES_MIN - 1, FRAME_BYTES_HARD_MAX + 1, u32::MAX] {
            let err = FrameLimits::new(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    FrameError::InvalidConfig {
                        field: "frame_bytes_max",
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert!(FrameLimits::new(FRAME_BYTES_MIN).is_ok());
        assert!(FrameLimits::new(FRAME_BYTES_HARD_MAX).is_ok());
    }

    #[test]
    fn unvalidated_limits_are_clamped() {
        let huge = FrameLimits {
            frame_bytes_max: u32::MAX,
        };
        assert_eq!(huge.effective_frame_bytes_max(), FRAME_BYTES_HARD_MAX);
        let zero = FrameLimits { frame_bytes_max: 0 };
        assert_eq!(zero.effective_frame_bytes_max(), FRAME_BYTES_MIN);
    }
}
