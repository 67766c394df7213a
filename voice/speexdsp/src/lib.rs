//! A safe wrapper over the system SpeexDSP's acoustic echo canceller (MDF, a frequency-domain
//! adaptive filter) and, behind it, its preprocessor used only as a residual-echo
//! suppressor. The voice engine's only foreign code: the workspace forbids `unsafe`, so the
//! few calls into libspeexdsp live here, behind an API that checks every length and pointer.
//!
//! Why hand-written and not a crates.io binding: the `speexdsp` crate generates its bindings
//! with bindgen (libclang at build time) for seven functions, and `aec-rs` takes frames as
//! slices without checking their length against the frame size (a short slice is an
//! out-of-bounds read in C). Eight declarations are less to trust than either.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::ptr::NonNull;

/// Opaque C state types.
#[repr(C)]
struct SpeexEchoState {
    _private: [u8; 0],
}
#[repr(C)]
struct SpeexPreprocessState {
    _private: [u8; 0],
}

// From speex/speex_echo.h and speex/speex_preprocess.h (SpeexDSP 1.2).
const SPEEX_ECHO_SET_SAMPLING_RATE: c_int = 24;
const SPEEX_PREPROCESS_SET_DENOISE: c_int = 0;
const SPEEX_PREPROCESS_SET_AGC: c_int = 2;
const SPEEX_PREPROCESS_SET_DEREVERB: c_int = 8;
const SPEEX_PREPROCESS_SET_NOISE_SUPPRESS: c_int = 18;
const SPEEX_PREPROCESS_SET_ECHO_SUPPRESS: c_int = 20;
const SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE: c_int = 22;
const SPEEX_PREPROCESS_SET_ECHO_STATE: c_int = 24;

#[allow(unsafe_code)]
mod ffi {
    use super::{c_int, c_void, SpeexEchoState, SpeexPreprocessState};

    // `spx_int16_t` is `int16_t` (speexdsp_config_types.h).
    extern "C" {
        pub fn speex_echo_state_init(
            frame_size: c_int,
            filter_length: c_int,
        ) -> *mut SpeexEchoState;
        pub fn speex_echo_state_destroy(st: *mut SpeexEchoState);
        pub fn speex_echo_cancellation(
            st: *mut SpeexEchoState,
            rec: *const i16,
            play: *const i16,
            out: *mut i16,
        );
        pub fn speex_echo_state_reset(st: *mut SpeexEchoState);
        pub fn speex_echo_ctl(st: *mut SpeexEchoState, request: c_int, ptr: *mut c_void) -> c_int;
        pub fn speex_preprocess_state_init(
            frame_size: c_int,
            sampling_rate: c_int,
        ) -> *mut SpeexPreprocessState;
        pub fn speex_preprocess_state_destroy(st: *mut SpeexPreprocessState);
        pub fn speex_preprocess_run(st: *mut SpeexPreprocessState, x: *mut i16) -> c_int;
        pub fn speex_preprocess_ctl(
            st: *mut SpeexPreprocessState,
            request: c_int,
            ptr: *mut c_void,
        ) -> c_int;
    }
}

/// What can go wrong; never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A setting out of the range SpeexDSP supports.
    InvalidConfig(String),
    /// libspeexdsp returned no state (out of memory) or refused a setting.
    Init(&'static str),
    /// A frame of the wrong length was passed.
    FrameLength {
        expected: usize,
        mic: usize,
        far: usize,
        out: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(what) => write!(f, "invalid echo canceller setting: {what}"),
            Error::Init(what) => write!(f, "libspeexdsp refused: {what}"),
            Error::FrameLength {
                expected,
                mic,
                far,
                out,
            } => write!(
                f,
                "echo canceller frames must be {expected} samples (mic {mic}, far end {far}, \
                 output {out})"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// How the canceller is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoConfig {
    /// Samples per frame (one call of [`EchoCanceller::process`]); SpeexDSP recommends
    /// 10–20 ms.
    pub frame_size: usize,
    /// Length of the adaptive filter in samples: the longest echo delay plus tail it can
    /// cancel. Longer converges more slowly.
    pub filter_length: usize,
    pub sample_rate: u32,
    /// Residual-echo suppression after the linear filter (the preprocessor's spectral gain,
    /// fed with the canceller's residual-echo estimate): attenuation in dB (negative) while
    /// only the far end talks, or `None` to skip the preprocessor.
    pub residual_suppression_db: Option<i32>,
    /// ... and while the near end talks too (double talk): smaller, to keep the near voice.
    pub residual_suppression_active_db: i32,
}

/// SpeexDSP's echo canceller followed by its residual-echo suppressor.
pub struct EchoCanceller {
    echo: NonNull<SpeexEchoState>,
    /// The preprocessor, holding a pointer to `echo` (destroyed first).
    preprocess: Option<NonNull<SpeexPreprocessState>>,
    frame_size: usize,
}

// SAFETY: the states are plain heap memory owned by this value alone (no thread-local or
// global state in libspeexdsp), and every call takes `&mut self`, so moving the value to
// another thread is sound. It is not `Sync`.
#[allow(unsafe_code)]
unsafe impl Send for EchoCanceller {}

#[allow(unsafe_code)]
impl EchoCanceller {
    pub fn new(config: EchoConfig) -> Result<Self, Error> {
        let frame = c_int::try_from(config.frame_size)
            .ok()
            .filter(|&n| n > 0 && n <= 4096)
            .ok_or_else(|| {
                Error::InvalidConfig(format!("frame size {} (1..=4096)", config.frame_size))
            })?;
        let filter = c_int::try_from(config.filter_length)
            .ok()
            .filter(|&n| n >= frame && n <= 1 << 17)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "filter length {} (frame size..=131072)",
                    config.filter_length
                ))
            })?;
        let mut rate = c_int::try_from(config.sample_rate)
            .ok()
            .filter(|r| (8_000..=96_000).contains(r))
            .ok_or_else(|| {
                Error::InvalidConfig(format!("sample rate {} (8000..=96000)", config.sample_rate))
            })?;
        // SAFETY: plain constructor; a null return is handled.
        let echo = NonNull::new(unsafe { ffi::speex_echo_state_init(frame, filter) })
            .ok_or(Error::Init("echo canceller state"))?;
        // Owned from here: dropped (destroyed) on every early return below.
        let mut canceller = Self {
            echo,
            preprocess: None,
            frame_size: config.frame_size,
        };
        // SAFETY: `echo` is a live state; the request takes a pointer to an int.
        let status = unsafe {
            ffi::speex_echo_ctl(
                echo.as_ptr(),
                SPEEX_ECHO_SET_SAMPLING_RATE,
                (&mut rate as *mut c_int).cast::<c_void>(),
            )
        };
        if status != 0 {
            return Err(Error::Init("echo canceller sampling rate"));
        }
        if let Some(suppress) = config.residual_suppression_db {
            // SAFETY: plain constructor; a null return is handled.
            let pre = NonNull::new(unsafe { ffi::speex_preprocess_state_init(frame, rate) })
                .ok_or(Error::Init("preprocessor state"))?;
            canceller.preprocess = Some(pre);
            // Only the residual-echo suppression: the engine has its own noise suppression
            // (RNNoise), gain and voice detection. The preprocessor's spectral gain is its
            // denoiser, which must stay on for echo suppression to act; with a 0 dB noise
            // floor it leaves stationary noise alone.
            let settings: [(c_int, c_int); 6] = [
                (SPEEX_PREPROCESS_SET_DENOISE, 1),
                (SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, 0),
                (SPEEX_PREPROCESS_SET_AGC, 0),
                (SPEEX_PREPROCESS_SET_DEREVERB, 0),
                (SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, suppress.min(0)),
                (
                    SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE,
                    config.residual_suppression_active_db.min(0),
                ),
            ];
            for (request, value) in settings {
                let mut value = value;
                // SAFETY: `pre` is a live state; each of these requests takes an int pointer.
                let status = unsafe {
                    ffi::speex_preprocess_ctl(
                        pre.as_ptr(),
                        request,
                        (&mut value as *mut c_int).cast::<c_void>(),
                    )
                };
                if status != 0 {
                    return Err(Error::Init("preprocessor setting"));
                }
            }
            // SAFETY: both states are live; the preprocessor keeps the pointer, and `Drop`
            // destroys the preprocessor before the echo state.
            let status = unsafe {
                ffi::speex_preprocess_ctl(
                    pre.as_ptr(),
                    SPEEX_PREPROCESS_SET_ECHO_STATE,
                    echo.as_ptr().cast::<c_void>(),
                )
            };
            if status != 0 {
                return Err(Error::Init("preprocessor echo state"));
            }
        }
        Ok(canceller)
    }

    /// Samples per frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Removes from `mic` the echo of `far` (what was played, aligned so that its echo comes
    /// later in `mic`, within the filter length), writing the result to `out`: the linear
    /// filter, then the residual-echo suppressor if configured. All three are one frame long.
    pub fn process(&mut self, mic: &[i16], far: &[i16], out: &mut [i16]) -> Result<(), Error> {
        self.cancel(mic, far, out)?;
        self.suppress_residual(out)
    }

    /// The linear filter alone: `out` is `mic` minus the filter's estimate of the echo of
    /// `far`. All three are one frame long.
    pub fn cancel(&mut self, mic: &[i16], far: &[i16], out: &mut [i16]) -> Result<(), Error> {
        let n = self.frame_size;
        if mic.len() != n || far.len() != n || out.len() != n {
            return Err(Error::FrameLength {
                expected: n,
                mic: mic.len(),
                far: far.len(),
                out: out.len(),
            });
        }
        // SAFETY: the state is live and the three buffers are exactly one frame long, which
        // is all the canceller reads or writes.
        unsafe {
            ffi::speex_echo_cancellation(
                self.echo.as_ptr(),
                mic.as_ptr(),
                far.as_ptr(),
                out.as_mut_ptr(),
            );
        }
        Ok(())
    }

    /// The residual-echo suppressor alone (nothing without one), in place, on the frame the
    /// last [`EchoCanceller::cancel`] produced (or a correction of it): it takes the echo
    /// left from the filter's state after that call.
    pub fn suppress_residual(&mut self, frame: &mut [i16]) -> Result<(), Error> {
        let n = self.frame_size;
        if frame.len() != n {
            return Err(Error::FrameLength {
                expected: n,
                mic: frame.len(),
                far: n,
                out: frame.len(),
            });
        }
        if let Some(pre) = self.preprocess {
            // SAFETY: the state is live and `frame` is one frame long, processed in place.
            unsafe {
                ffi::speex_preprocess_run(pre.as_ptr(), frame.as_mut_ptr());
            }
        }
        Ok(())
    }

    /// Changes the residual-echo suppression (dB, negative; 0 lets the frame through as it
    /// is) while only the far end talks and while the near end talks too: takes effect from
    /// the next [`EchoCanceller::suppress_residual`]. Nothing without a suppressor.
    pub fn set_residual_suppression(&mut self, db: i32, active_db: i32) -> Result<(), Error> {
        let Some(pre) = self.preprocess else {
            return Ok(());
        };
        for (request, value) in [
            (SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, db),
            (SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, active_db),
        ] {
            // Clamped to what SpeexDSP stores (it takes the negative absolute value).
            let mut value: c_int = value.clamp(-100, 0);
            // SAFETY: `pre` is a live state; each of these requests takes an int pointer.
            let status = unsafe {
                ffi::speex_preprocess_ctl(
                    pre.as_ptr(),
                    request,
                    (&mut value as *mut c_int).cast::<c_void>(),
                )
            };
            if status != 0 {
                return Err(Error::Init("preprocessor setting"));
            }
        }
        Ok(())
    }

    /// Forgets the learnt echo path (after the devices or their alignment changed).
    pub fn reset(&mut self) {
        // SAFETY: the state is live.
        unsafe { ffi::speex_echo_state_reset(self.echo.as_ptr()) }
    }
}

#[allow(unsafe_code)]
impl Drop for EchoCanceller {
    fn drop(&mut self) {
        if let Some(pre) = self.preprocess.take() {
            // SAFETY: live and owned; destroyed once, before the echo state it points to.
            unsafe { ffi::speex_preprocess_state_destroy(pre.as_ptr()) }
        }
        // SAFETY: live and owned; destroyed once.
        unsafe { ffi::speex_echo_state_destroy(self.echo.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EchoConfig {
        EchoConfig {
            frame_size: 160,
            filter_length: 1600,
            sample_rate: 16_000,
            residual_suppression_db: Some(-40),
            residual_suppression_active_db: -15,
        }
    }

    #[test]
    fn bad_settings_are_errors_not_crashes() {
        for bad in [
            EchoConfig {
                frame_size: 0,
                ..config()
            },
            EchoConfig {
                filter_length: 10,
                ..config()
            },
            EchoConfig {
                sample_rate: 1,
                ..config()
            },
        ] {
            assert!(matches!(
                EchoCanceller::new(bad),
                Err(Error::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn frames_of_the_wrong_length_are_refused() -> Result<(), Error> {
        let mut aec = EchoCanceller::new(config())?;
        let mut out = [0i16; 160];
        let err = aec.process(&[0; 100], &[0; 160], &mut out);
        assert!(matches!(err, Err(Error::FrameLength { mic: 100, .. })));
        aec.process(&[0; 160], &[0; 160], &mut out)?;
        Ok(())
    }

    #[test]
    fn suppression_can_change_mid_stream_with_or_without_a_suppressor() -> Result<(), Error> {
        for residual_suppression_db in [Some(-40), None] {
            let mut aec = EchoCanceller::new(EchoConfig {
                residual_suppression_db,
                ..config()
            })?;
            let mut out = [0i16; 160];
            aec.process(&[100; 160], &[100; 160], &mut out)?;
            for db in [0, -5, -40, 7, -200] {
                aec.set_residual_suppression(db, db)?;
                aec.process(&[100; 160], &[100; 160], &mut out)?;
            }
        }
        Ok(())
    }

    #[test]
    fn cancels_a_delayed_attenuated_copy_of_noise() -> Result<(), Error> {
        // White-ish noise as the far end; the microphone hears it 20 ms later at -6 dB.
        let mut aec = EchoCanceller::new(EchoConfig {
            residual_suppression_db: None,
            ..config()
        })?;
        let mut seed = 1u32;
        let far: Vec<i16> = (0..16_000 * 6)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i16) / 8
            })
            .collect();
        let delay = 320;
        let mic: Vec<i16> = (0..far.len())
            .map(|i| if i >= delay { far[i - delay] / 2 } else { 0 })
            .collect();
        let mut out = vec![0i16; far.len()];
        for ((m, f), o) in mic
            .chunks_exact(160)
            .zip(far.chunks_exact(160))
            .zip(out.chunks_exact_mut(160))
        {
            aec.process(m, f, o)?;
        }
        let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let tail = 16_000 * 4;
        let erle = 10.0 * (energy(&mic[tail..]) / energy(&out[tail..]).max(1.0)).log10();
        assert!(erle > 20.0, "ERLE {erle:.1} dB");
        Ok(())
    }
}
