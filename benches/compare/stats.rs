//! Medians and ratios: how rounds become one figure per server.

/// The median of `values`, ignoring NaNs; the mean of the two middle values
/// for an even count; `None` when nothing is left.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    })
}

/// `value ÷ reference`; `None` when either is missing or the reference is
/// not a positive finite number.
pub fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (value, reference) {
        (Some(value), Some(reference))
            if reference.is_finite() && reference > 0.0 && value.is_finite() =>
        {
            Some(value / reference)
        }
        _ => None,
    }
}

/// Smallest and largest of `values`, ignoring NaNs.
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn median_ignores_nan_and_is_robust_to_one_outlier() {
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), Some(3.0));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[100.0, 101.0, 1.0e9]), Some(101.0));
    }

    #[test]
    fn ratio_needs_a_positive_reference() {
        assert_eq!(ratio(Some(150.0), Some(100.0)), Some(1.5));
        assert_eq!(ratio(Some(0.0), Some(100.0)), Some(0.0));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(Some(1.0), Some(-2.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(f64::INFINITY), Some(1.0)), None);
    }

    #[test]
    fn range_spans_the_values() {
        assert_eq!(range(&[3.0, f64::NAN, 1.0, 2.0]), Some((1.0, 3.0)));
        assert_eq!(range(&[]), None);
    }
}
