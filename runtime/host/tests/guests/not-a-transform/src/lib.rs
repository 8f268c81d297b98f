//! A component that exports nothing of the weir:connector contract.

/// Not part of any world.
#[unsafe(no_mangle)]
pub extern "C" fn unrelated(x: u32) -> u32 {
    x.wrapping_mul(2)
}
