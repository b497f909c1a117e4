use super::indexes::Intervals;

#[test]
fn completed_indexes_are_merged_and_written_as_upstream() {
    let ix = Intervals::parse("1,3-5", 10);
    assert_eq!(ix.total(), 4);
    assert_eq!(ix.with([2, 7, 8]).to_string(), "1-5,7,8");
    assert_eq!(Intervals::default().with([0]).to_string(), "0");
    assert_eq!(Intervals::parse("0-9", 5).to_string(), "0-4");
}
