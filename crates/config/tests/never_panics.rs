//! Arbitrary values for any variable never panic: parsing is Ok or a named error.

use config::{Config, names};
use proptest::prelude::*;

fn var_name() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(names::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_values_are_ok_or_named_errors(
        vars in proptest::collection::vec((var_name(), any::<String>()), 0..6)
    ) {
        match Config::from_vars(vars.iter().map(|(k, v)| (*k, v.as_str()))) {
            Ok(c) => prop_assert!(c.networking.eni_mtu >= 576 && c.networking.eni_mtu <= 9001),
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                for f in &e.errors {
                    prop_assert!(names::ALL.contains(&f.variable));
                    prop_assert!(f.to_string().starts_with(f.variable));
                }
            }
        }
    }

    #[test]
    fn numeric_looking_values_are_ok_or_named_errors(
        var in var_name(),
        value in "[-+]?(0[xXoObB])?[0-9a-fA-F_]{0,12}",
    ) {
        match Config::from_vars([(var, value.as_str())]) {
            Ok(c) => prop_assert!(c.networking.connmark >= 1),
            Err(e) => {
                let quoted = format!("{:?}", value);
                prop_assert!(!e.errors.is_empty());
                for f in e.errors.iter().filter(|f| f.variable == var) {
                    prop_assert!(f.to_string().contains(&quoted));
                }
            }
        }
    }
}
