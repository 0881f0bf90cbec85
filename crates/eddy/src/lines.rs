//! The built-in jobs' output lines, written without `core::fmt` on the hot path.
//!
//! A sink formats every record it writes; `write!(s, "{},{}", ..)` goes through `fmt::write`,
//! `pad_integral` and the integer `Display` impls for each field (about 30 % of the CPU of the
//! `sequence` job). Here integers are written with `itoa` (two digits per step, no padding logic)
//! and strings are copied as they are. The bytes are the same as `Display`'s.

/// A field of an output line: appends itself in `Display`'s form.
pub trait Field {
    fn push_to(&self, s: &mut String);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            #[inline]
            fn push_to(&self, s: &mut String) {
                s.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}
int_field!(u32, u64, i64, usize);

impl Field for str {
    #[inline]
    fn push_to(&self, s: &mut String) {
        s.push_str(self);
    }
}

impl Field for String {
    #[inline]
    fn push_to(&self, s: &mut String) {
        s.push_str(self);
    }
}

impl<F: Field + ?Sized> Field for &F {
    #[inline]
    fn push_to(&self, s: &mut String) {
        (**self).push_to(s)
    }
}

/// Appends one field.
#[inline]
pub fn push<F: Field + ?Sized>(s: &mut String, field: &F) {
    field.push_to(s)
}

/// Appends `milli / 1000` with exactly three decimals (`{}.{:03}`).
#[inline]
pub fn push_milli(s: &mut String, milli: u64) {
    push(s, &(milli / 1000));
    s.push('.');
    let frac = (milli % 1000) as u32;
    if frac < 100 {
        s.push('0');
    }
    if frac < 10 {
        s.push('0');
    }
    push(s, &frac);
}

/// Appends the fields separated by commas: `csv!(s, a, b, c)` writes what
/// `write!(s, "{},{},{}", a, b, c)` writes.
macro_rules! csv {
    ($s:expr, $first:expr $(, $rest:expr)*) => {{
        let s: &mut String = $s;
        $crate::lines::push(s, &$first);
        $(
            s.push(',');
            $crate::lines::push(s, &$rest);
        )*
    }};
}
pub(crate) use csv;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let mut s = String::new();
        for n in [
            0u64,
            7,
            9,
            10,
            99,
            100,
            12_345,
            999_999,
            1_000_000,
            u64::MAX,
        ] {
            s.clear();
            push(&mut s, &n);
            assert_eq!(s, n.to_string());
        }
        for n in [0i64, -1, 42, -1_234_567, i64::MIN, i64::MAX] {
            s.clear();
            push(&mut s, &n);
            assert_eq!(s, n.to_string());
        }
        s.clear();
        push(&mut s, &u32::MAX);
        assert_eq!(s, u32::MAX.to_string());
    }

    #[test]
    fn csv_matches_write() {
        let mut s = String::from("x;");
        let name = String::from("naïve");
        csv!(
            &mut s,
            18_446_744_073_709_551_615u64,
            name,
            "CA",
            -5i64,
            0u32
        );
        assert_eq!(
            s,
            format!("x;{},{},{},{},{}", u64::MAX, "naïve", "CA", -5, 0)
        );
    }

    #[test]
    fn milli_has_three_decimals() {
        for m in [
            0u64,
            5,
            50,
            99,
            100,
            999,
            1_000,
            1_001,
            1_010,
            90_800,
            123_456_789,
        ] {
            let mut s = String::new();
            push_milli(&mut s, m);
            assert_eq!(s, format!("{}.{:03}", m / 1000, m % 1000));
        }
    }
}
