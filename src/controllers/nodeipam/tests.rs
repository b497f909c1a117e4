use serde_json::json;

use super::*;

fn node(name: &str, cidr: Option<&str>) -> Node {
    let mut v = json!({"metadata": {"name": name}, "spec": {}});
    if let Some(c) = cidr {
        v["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    serde_json::from_value(v).unwrap()
}

fn allocator(range: &str, mask: u8) -> Allocator {
    Allocator::new(range.parse().unwrap(), mask).unwrap()
}

#[test]
fn nodes_get_distinct_blocks_in_order() {
    let mut a = allocator("10.42.0.0/16", 24);
    a.prime([]);
    let first = a.step("n1", Some(&node("n1", None)));
    let second = a.step("n2", Some(&node("n2", None)));
    assert_eq!(first, Step::Assign("10.42.0.0/24".parse().unwrap()));
    assert_eq!(second, Step::Assign("10.42.1.0/24".parse().unwrap()));
    // Not seen written yet: the same block again, not a new one.
    assert_eq!(a.step("n1", Some(&node("n1", None))), first);
    assert_eq!(
        a.step("n1", Some(&node("n1", Some("10.42.0.0/24")))),
        Step::Nothing
    );
}

#[test]
fn blocks_nodes_hold_are_never_handed_out_again() {
    let mut a = allocator("10.42.0.0/16", 24);
    let held = [
        node("old", Some("10.42.0.0/24")),
        node("older", Some("10.42.1.0/24")),
    ];
    a.prime(held.iter());
    assert_eq!(
        a.step("new", Some(&node("new", None))),
        Step::Assign("10.42.2.0/24".parse().unwrap())
    );
}

#[test]
fn a_deleted_nodes_block_is_reused_and_a_full_range_says_so_once() {
    let mut a = allocator("10.42.0.0/23", 24);
    a.prime([]);
    assert!(matches!(
        a.step("n1", Some(&node("n1", None))),
        Step::Assign(_)
    ));
    assert!(matches!(
        a.step("n2", Some(&node("n2", None))),
        Step::Assign(_)
    ));
    assert_eq!(
        a.step("n3", Some(&node("n3", None))),
        Step::Full { notify: true }
    );
    assert_eq!(
        a.step("n3", Some(&node("n3", None))),
        Step::Full { notify: false }
    );
    assert_eq!(a.step("n1", None), Step::Nothing);
    assert_eq!(
        a.step("n3", Some(&node("n3", None))),
        Step::Assign("10.42.0.0/24".parse().unwrap())
    );
}

#[test]
fn a_failed_write_gives_the_block_back() {
    let mut a = allocator("10.42.0.0/24", 24);
    a.prime([]);
    let Step::Assign(cidr) = a.step("n1", Some(&node("n1", None))) else {
        panic!("expected a block");
    };
    a.undo("n1", cidr);
    assert_eq!(a.step("n2", Some(&node("n2", None))), Step::Assign(cidr));
}

#[test]
fn cidr_set_refuses_masks_it_cannot_cut() {
    let range: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
    assert!(CidrSet::new(range, 15).is_none());
    assert!(CidrSet::new(range, 33).is_none());
    assert!(CidrSet::new("10.0.0.0/8".parse().unwrap(), 26).is_none());
    let mut set = CidrSet::new(range, 30).unwrap();
    assert_eq!(set.allocate(), Some("10.42.0.0/30".parse().unwrap()));
    assert!(!set.occupy("10.43.0.0/30".parse().unwrap()));
}
