//! The test suite's layout holds: every test file runs. Test files are modules of a few
//! binaries (`tests/suite_*.rs`, listed in `Cargo.toml` with `autotests = false`), so a file
//! that no suite names would silently never run; this test names it instead.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_test_file_is_in_a_suite() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let binaries: BTreeSet<String> = manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("path = \"tests/"))
        .filter_map(|rest| rest.strip_suffix(".rs\""))
        .map(str::to_owned)
        .collect();
    let mut in_a_suite = BTreeSet::new();
    for suite in binaries.iter().filter(|name| name.starts_with("suite_")) {
        let root = std::fs::read_to_string(tests.join(format!("{suite}.rs"))).unwrap();
        in_a_suite
            .extend(root.lines().filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';')).map(str::to_owned));
    }
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&tests).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs") else { continue };
        if !binaries.contains(module) && !in_a_suite.contains(module) {
            orphans.push(name);
        }
    }
    assert!(orphans.is_empty(), "test files no suite runs (add them to a tests/suite_*.rs): {orphans:?}");
    assert!(binaries.len() >= 2 && in_a_suite.contains("common"), "the layout was read: {binaries:?}");
}
