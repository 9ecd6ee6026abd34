//! ACL rules and their matching: who (a principal or `*`) may or may not do what (an
//! [`Operation`]) on which resources (a [`ResourceKind`] and a name, literal or prefix).
//!
//! A request is allowed when at least one `allow` rule matches it and no `deny` rule does: deny
//! wins, and nothing is allowed by default. Any operation allowed on a resource also allows
//! describing it (a producer may see the topic it writes to). Matching borrows the request's
//! names and allocates nothing.

use serde::{Deserialize, Serialize};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Write records to a topic.
    Produce,
    /// Read records from a topic, or read and move a group's offsets.
    Consume,
    /// See that a resource exists and its description.
    Describe,
    /// Create or delete a topic; on the cluster: manage ACLs.
    Admin,
}

impl Operation {
    pub const ALL: [Operation; 4] = [Self::Produce, Self::Consume, Self::Describe, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Consume => "consume",
            Self::Describe => "describe",
            Self::Admin => "admin",
        }
    }

    /// Parses an operation's name (`produce`, `consume`, `describe`, `admin`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of resources rules name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Topic,
    Group,
    /// The broker as a whole (ACL management). Its rules' names are ignored.
    Cluster,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Group => "group",
            Self::Cluster => "cluster",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Topic, Self::Group, Self::Cluster]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// One resource a request touches, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
}

impl Resource<'_> {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Topic(_) => ResourceKind::Topic,
            Self::Group(_) => ResourceKind::Group,
            Self::Cluster => ResourceKind::Cluster,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Topic(n) | Self::Group(n) => n,
            Self::Cluster => "",
        }
    }
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Topic(n) => write!(f, "topic {n:?}"),
            Self::Group(n) => write!(f, "group {n:?}"),
            Self::Cluster => f.write_str("the cluster"),
        }
    }
}

/// How a rule's name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// The name itself (`*` matches every name).
    #[default]
    Literal,
    /// Every name starting with the rule's name.
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// One ACL rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclRule {
    /// A principal's name, or `*` for every authenticated principal.
    pub principal: String,
    pub resource: ResourceKind,
    /// The resource name (literal or prefix); `*` with a literal pattern matches every name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub pattern: Pattern,
    pub operation: Operation,
    pub effect: Effect,
}

/// Principal names: what a token file, a certificate or a rule may name.
pub const MAX_PRINCIPAL_LEN: usize = 255;

impl AclRule {
    /// Checks the rule's fields, with what is wrong.
    ///
    /// # Errors
    /// An empty or overlong principal, or a topic/group rule without a name.
    pub fn validate(&self) -> Result<(), String> {
        if self.principal.is_empty() || self.principal.len() > MAX_PRINCIPAL_LEN {
            return Err(format!(
                "an ACL's principal must be 1 to {MAX_PRINCIPAL_LEN} bytes (or \"*\")"
            ));
        }
        if self.principal.chars().any(char::is_control) {
            return Err("an ACL's principal must not contain control characters".into());
        }
        match self.resource {
            ResourceKind::Cluster => Ok(()),
            ResourceKind::Topic | ResourceKind::Group => {
                if self.name.is_empty() && self.pattern == Pattern::Literal {
                    Err(format!(
                        "a {} ACL needs a name: a literal name, \"*\" for all, or a prefix",
                        self.resource.as_str()
                    ))
                } else if self.name.len() > 255 {
                    Err("an ACL's resource name must be at most 255 bytes".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    fn matches_principal(&self, principal: &str) -> bool {
        self.principal == "*" || self.principal == principal
    }

    fn matches_resource(&self, resource: &Resource<'_>) -> bool {
        if self.resource != resource.kind() {
            return false;
        }
        if self.resource == ResourceKind::Cluster {
            return true;
        }
        let name = resource.name();
        match self.pattern {
            Pattern::Literal => self.name == "*" || self.name == name,
            Pattern::Prefix => name.starts_with(self.name.as_str()),
        }
    }

    /// Whether this rule speaks about `operation`: its own, and for `describe` every operation
    /// of an allow rule (whatever one may do to a resource, one may see it). A deny rule speaks
    /// only about its own operation.
    fn covers(&self, operation: Operation) -> bool {
        self.operation == operation
            || (operation == Operation::Describe && self.effect == Effect::Allow)
    }

    /// Whether the rule applies to `principal` doing `operation` on `resource`.
    pub fn applies(&self, principal: &str, operation: Operation, resource: &Resource<'_>) -> bool {
        self.covers(operation)
            && self.matches_principal(principal)
            && self.matches_resource(resource)
    }
}

/// The verdict of `rules` on one request: deny wins, then allow, and nothing matching denies.
pub fn decide(
    rules: &[AclRule],
    principal: &str,
    operation: Operation,
    resource: &Resource<'_>,
) -> bool {
    let mut allowed = false;
    for r in rules {
        if r.applies(principal, operation, resource) {
            match r.effect {
                Effect::Deny => return false,
                Effect::Allow => allowed = true,
            }
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        p: &str,
        kind: ResourceKind,
        name: &str,
        pattern: Pattern,
        op: Operation,
        e: Effect,
    ) -> AclRule {
        AclRule {
            principal: p.into(),
            resource: kind,
            name: name.into(),
            pattern,
            operation: op,
            effect: e,
        }
    }

    use Effect::{Allow, Deny};
    use Operation::{Admin, Consume, Describe, Produce};
    use Pattern::{Literal, Prefix};
    use ResourceKind::{Cluster, Group, Topic};

    #[test]
    fn nothing_is_allowed_without_a_rule() {
        assert!(!decide(&[], "alice", Produce, &Resource::Topic("t")));
    }

    #[test]
    fn literal_prefix_and_wildcards_match() {
        let rules = [
            rule("alice", Topic, "orders", Literal, Produce, Allow),
            rule("bob", Topic, "logs.", Prefix, Consume, Allow),
            rule("*", Group, "*", Literal, Consume, Allow),
        ];
        assert!(decide(&rules, "alice", Produce, &Resource::Topic("orders")));
        assert!(!decide(
            &rules,
            "alice",
            Produce,
            &Resource::Topic("orders2")
        ));
        assert!(!decide(
            &rules,
            "alice",
            Consume,
            &Resource::Topic("orders")
        ));
        assert!(!decide(&rules, "bob", Produce, &Resource::Topic("orders")));
        assert!(decide(&rules, "bob", Consume, &Resource::Topic("logs.app")));
        assert!(!decide(&rules, "bob", Consume, &Resource::Topic("log")));
        assert!(decide(&rules, "carol", Consume, &Resource::Group("any")));
        assert!(!decide(&rules, "carol", Consume, &Resource::Topic("any")));
    }

    #[test]
    fn deny_wins_over_allow_whatever_the_order() {
        let mut rules = vec![
            rule("*", Topic, "", Prefix, Produce, Allow),
            rule("mallory", Topic, "secret.", Prefix, Produce, Deny),
        ];
        assert!(decide(
            &rules,
            "alice",
            Produce,
            &Resource::Topic("secret.x")
        ));
        assert!(!decide(
            &rules,
            "mallory",
            Produce,
            &Resource::Topic("secret.x")
        ));
        assert!(decide(
            &rules,
            "mallory",
            Produce,
            &Resource::Topic("public")
        ));
        rules.reverse();
        assert!(!decide(
            &rules,
            "mallory",
            Produce,
            &Resource::Topic("secret.x")
        ));
    }

    #[test]
    fn any_allowed_operation_implies_describe_but_a_deny_only_denies_its_own() {
        let rules = [
            rule("alice", Topic, "t", Literal, Produce, Allow),
            rule("bob", Topic, "t", Literal, Consume, Allow),
            rule("bob", Topic, "t", Literal, Produce, Deny),
        ];
        assert!(decide(&rules, "alice", Describe, &Resource::Topic("t")));
        assert!(decide(&rules, "bob", Describe, &Resource::Topic("t")));
        assert!(!decide(&rules, "alice", Describe, &Resource::Topic("u")));
    }

    #[test]
    fn cluster_rules_ignore_names() {
        let rules = [rule("root", Cluster, "", Literal, Admin, Allow)];
        assert!(decide(&rules, "root", Admin, &Resource::Cluster));
        assert!(!decide(&rules, "root", Admin, &Resource::Topic("t")));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let bad = rule("", Topic, "t", Literal, Produce, Allow);
        assert!(bad.validate().unwrap_err().contains("principal"));
        let bad = rule("a", Topic, "", Literal, Produce, Allow);
        assert!(bad.validate().unwrap_err().contains("needs a name"));
        assert!(
            rule("a", Topic, "", Prefix, Produce, Allow)
                .validate()
                .is_ok()
        );
        assert!(
            rule("a", Cluster, "", Literal, Admin, Allow)
                .validate()
                .is_ok()
        );
    }
}
