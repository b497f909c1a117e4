//! Tests of CronJob schedule parsing.

use crate::apiserver::admission::cron::schedule_error;

#[test]
fn standard_schedules_and_descriptors_parse() {
    for ok in [
        "* * * * *",
        "*/5 * * * *",
        "0 0 1 1 *",
        "0 9-17/2 * * mon-fri",
        "15,45 */2 1-15 JAN,Jul ?",
        "5/10 * * * *",
        "@hourly",
        "@daily",
        "@midnight",
        "@yearly",
        "@every 1h30m",
        "TZ=UTC 0 * * * *",
    ] {
        assert_eq!(schedule_error(ok), None, "{ok}");
    }
}

#[test]
fn wrong_field_counts_are_reported_with_the_fields() {
    assert_eq!(
        schedule_error("* * *").as_deref(),
        Some("expected exactly 5 fields, found 3: [* * *]")
    );
    assert_eq!(
        schedule_error("0 0 * * * *").as_deref(),
        Some("expected exactly 5 fields, found 6: [0 0 * * * *]")
    );
}

#[test]
fn out_of_range_values_name_the_bound() {
    assert_eq!(
        schedule_error("60 * * * *").as_deref(),
        Some("end of range (60) above maximum (59): 60")
    );
    assert_eq!(
        schedule_error("* * 0 * *").as_deref(),
        Some("beginning of range (0) below minimum (1): 0")
    );
    assert_eq!(
        schedule_error("* 5-2 * * *").as_deref(),
        Some("beginning of range (5) beyond end of range (2): 5-2")
    );
    assert_eq!(
        schedule_error("* * * * 7").as_deref(),
        Some("end of range (7) above maximum (6): 7")
    );
}

#[test]
fn malformed_fields_get_robfig_cron_messages() {
    assert_eq!(
        schedule_error("x * * * *").as_deref(),
        Some("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax")
    );
    assert_eq!(
        schedule_error("*/0 * * * *").as_deref(),
        Some("step of range should be a positive number: */0")
    );
    assert_eq!(
        schedule_error("1-2-3 * * * *").as_deref(),
        Some("too many hyphens: 1-2-3")
    );
    assert_eq!(
        schedule_error("*/2/3 * * * *").as_deref(),
        Some("too many slashes: */2/3")
    );
    assert_eq!(
        schedule_error("@sometimes").as_deref(),
        Some("unrecognized descriptor: @sometimes")
    );
    assert_eq!(schedule_error("").as_deref(), Some("empty spec string"));
}
