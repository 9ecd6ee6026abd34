//! The ACL admin RPCs (security, issue 15): conversions between `pb::AclRule` and
//! [`AclRule`], and the calls, made through the caller's [`Caller`] (admin on the cluster).

use crate::auth::{AclRule, Effect, Operation, Pattern, ResourceKind};
use crate::broker::{BrokerError, Caller};
use crate::proto as pb;

/// The rule a request names.
///
/// # Errors
/// `InvalidArgument` for a missing rule or an unspecified resource type or operation.
pub fn rule_from(r: Option<pb::AclRule>) -> Result<AclRule, BrokerError> {
    let r = r.ok_or_else(|| BrokerError::InvalidArgument("the request needs an acl".into()))?;
    let resource = match r.resource_type() {
        pb::AclResourceType::Topic => ResourceKind::Topic,
        pb::AclResourceType::Group => ResourceKind::Group,
        pb::AclResourceType::Cluster => ResourceKind::Cluster,
        pb::AclResourceType::Unspecified => {
            return Err(BrokerError::InvalidArgument(
                "an ACL needs a resource_type: topic, group or cluster".into(),
            ));
        }
    };
    let operation = match r.operation() {
        pb::AclOperation::Produce => Operation::Produce,
        pb::AclOperation::Consume => Operation::Consume,
        pb::AclOperation::Describe => Operation::Describe,
        pb::AclOperation::Admin => Operation::Admin,
        pb::AclOperation::Unspecified => {
            return Err(BrokerError::InvalidArgument(
                "an ACL needs an operation: produce, consume, describe or admin".into(),
            ));
        }
    };
    let pattern = match r.pattern() {
        pb::AclPattern::Literal => Pattern::Literal,
        pb::AclPattern::Prefix => Pattern::Prefix,
    };
    let effect = match r.effect() {
        pb::AclEffect::Allow => Effect::Allow,
        pb::AclEffect::Deny => Effect::Deny,
    };
    Ok(AclRule {
        principal: r.principal,
        resource,
        name: r.name,
        pattern,
        operation,
        effect,
    })
}

pub fn rule_to(r: AclRule) -> pb::AclRule {
    pb::AclRule {
        principal: r.principal,
        resource_type: match r.resource {
            ResourceKind::Topic => pb::AclResourceType::Topic,
            ResourceKind::Group => pb::AclResourceType::Group,
            ResourceKind::Cluster => pb::AclResourceType::Cluster,
        } as i32,
        name: r.name,
        pattern: match r.pattern {
            Pattern::Literal => pb::AclPattern::Literal,
            Pattern::Prefix => pb::AclPattern::Prefix,
        } as i32,
        operation: match r.operation {
            Operation::Produce => pb::AclOperation::Produce,
            Operation::Consume => pb::AclOperation::Consume,
            Operation::Describe => pb::AclOperation::Describe,
            Operation::Admin => pb::AclOperation::Admin,
        } as i32,
        effect: match r.effect {
            Effect::Allow => pb::AclEffect::Allow,
            Effect::Deny => pb::AclEffect::Deny,
        } as i32,
    }
}

pub fn list(caller: &Caller) -> Result<pb::ListAclsResponse, BrokerError> {
    Ok(pb::ListAclsResponse {
        acls: caller.list_acls()?.into_iter().map(rule_to).collect(),
    })
}

pub async fn add(
    caller: &Caller,
    req: pb::AddAclRequest,
) -> Result<pb::AddAclResponse, BrokerError> {
    let rule = rule_from(req.acl)?;
    Ok(pb::AddAclResponse {
        added: caller.add_acl(rule).await?,
    })
}

pub async fn remove(
    caller: &Caller,
    req: pb::RemoveAclRequest,
) -> Result<pb::RemoveAclResponse, BrokerError> {
    let rule = rule_from(req.acl)?;
    Ok(pb::RemoveAclResponse {
        removed: caller.remove_acl(rule).await?,
    })
}
