//! The shipped rule pack, compiled into the binary so `demo` (and a fresh
//! install) has rules without a checkout. `rules/` in the repository is the
//! same text; a test keeps them equal.

/// `(file name, YAML text)` of every shipped rule file.
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    ("rules/aml.yaml", include_str!("../../rules/aml.yaml")),
    (
        "rules/documents.yaml",
        include_str!("../../rules/documents.yaml"),
    ),
    ("rules/kyc.yaml", include_str!("../../rules/kyc.yaml")),
    (
        "rules/retries.yaml",
        include_str!("../../rules/retries.yaml"),
    ),
];

/// The shipped pack, compiled.
pub fn shipped_rules() -> super::RuleSet {
    let sources: Vec<(String, String)> = SHIPPED_RULES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    super::load_sources(&sources, super::ScriptLimits::default())
        .unwrap_or_else(|d| panic!("the shipped rules are checked by the test suite: {d:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_pack_is_the_rules_folder() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".yaml") && !n.ends_with(".test.yaml"))
                .map(|n| format!("rules/{n}"))
                .collect();
        on_disk.sort();
        let embedded: Vec<String> = super::SHIPPED_RULES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(embedded, on_disk, "add new rule files to SHIPPED_RULES");
        assert!(super::shipped_rules().rules().len() >= 13);
    }
}
