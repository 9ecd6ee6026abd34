//! The ACL check allocates nothing (issue 15: "no allocation per record; one check per request
//! and topic"): authenticating a token and deciding a request against many rules are counted by
//! a global allocator that counts this thread's allocations.
#![allow(unsafe_code)] // a counting GlobalAlloc needs `unsafe impl`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use obelisk::auth::{
    AclRule, AclStore, Credentials, Effect, Operation, Pattern, Resource, ResourceKind, Security,
    TokenFile, tokens,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn authenticating_and_checking_a_request_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, tokens::line_for("secret", "alice")).unwrap();
    let mut rules: Vec<AclRule> = (0..200)
        .map(|i| AclRule {
            principal: format!("user{i}"),
            resource: ResourceKind::Topic,
            name: format!("topic{i}."),
            pattern: Pattern::Prefix,
            operation: Operation::Produce,
            effect: Effect::Allow,
        })
        .collect();
    rules.push(AclRule {
        principal: "alice".into(),
        resource: ResourceKind::Topic,
        name: "orders".into(),
        pattern: Pattern::Literal,
        operation: Operation::Produce,
        effect: Effect::Allow,
    });
    let security = Security::enabled(
        Some(TokenFile::open(&path).unwrap()),
        AclStore::in_memory(rules),
    );
    let creds = Credentials {
        token: Some("secret"),
        verified: None,
    };
    // Warm up (lazy statics, thread-locals).
    let p = security.authenticate(creds).unwrap();
    assert!(security.allows(&p, Operation::Produce, &Resource::Topic("orders")));

    let before = allocations();
    for _ in 0..1000 {
        let p = security.authenticate(creds).unwrap();
        assert!(security.allows(&p, Operation::Produce, &Resource::Topic("orders")));
        assert!(!security.allows(&p, Operation::Consume, &Resource::Topic("orders")));
    }
    assert_eq!(allocations() - before, 0, "the per-request check allocated");
}
