//! Security commands (issue 15): `obelisk acl add|list|remove` (admin RPCs), `obelisk token new`
//! (a token and its token-file line), `obelisk dev-certs` (a throwaway CA and certificates).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;

use super::connect::{ServerArgs, reply};
use super::table::{Table, pretty_json};
use crate::auth::{AclRule, Effect, Operation, Pattern, ResourceKind};
use crate::grpc::acl::{rule_from, rule_to};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct AclArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AclCommand,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// The ACL rules in force.
    List,
    /// Add a rule (needs admin on the cluster).
    Add(RuleArgs),
    /// Remove a rule (the same flags as it was added with).
    Remove(RuleArgs),
}

/// One rule, as flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("resource").required(true).args(["topic", "group", "cluster"])))]
pub struct RuleArgs {
    /// Who: a principal (token owner, certificate CN) or "*" for every authenticated one.
    #[arg(long)]
    pub principal: String,
    /// A topic name ("*": every topic; with --prefix, a name prefix).
    #[arg(long)]
    pub topic: Option<String>,
    /// A consumer group name ("*": every group; with --prefix, a name prefix).
    #[arg(long)]
    pub group: Option<String>,
    /// The cluster (ACL management: `--operation admin`).
    #[arg(long)]
    pub cluster: bool,
    /// The name is a prefix.
    #[arg(long)]
    pub prefix: bool,
    /// produce, consume, describe or admin.
    #[arg(long, value_parser = parse_operation)]
    pub operation: Operation,
    /// A deny rule (deny wins over any allow).
    #[arg(long)]
    pub deny: bool,
}

fn parse_operation(s: &str) -> Result<Operation, String> {
    Operation::parse(s).ok_or_else(|| "expected produce, consume, describe or admin".into())
}

impl RuleArgs {
    fn rule(&self) -> AclRule {
        let (resource, name) = match (&self.topic, &self.group) {
            (Some(t), _) => (ResourceKind::Topic, t.clone()),
            (None, Some(g)) => (ResourceKind::Group, g.clone()),
            (None, None) => (ResourceKind::Cluster, String::new()),
        };
        AclRule {
            principal: self.principal.clone(),
            resource,
            name,
            pattern: if self.prefix {
                Pattern::Prefix
            } else {
                Pattern::Literal
            },
            operation: self.operation,
            effect: if self.deny {
                Effect::Deny
            } else {
                Effect::Allow
            },
        }
    }
}

/// Runs an acl subcommand.
///
/// # Errors
/// The broker cannot be reached or refuses the call.
pub async fn run_acl(args: AclArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.server.connect().await?;
    let output = match args.command {
        AclCommand::List => {
            let acls = reply(client.list_acls(pb::ListAclsRequest {}).await)?.acls;
            let rules = acls
                .into_iter()
                .map(|r| rule_from(Some(r)))
                .collect::<Result<Vec<_>, _>>()?;
            if args.json {
                pretty_json(&serde_json::to_value(&rules)?)
            } else if rules.is_empty() {
                "no ACLs\n".into()
            } else {
                let mut t = Table::new(&[
                    "PRINCIPAL",
                    "RESOURCE",
                    "NAME",
                    "PATTERN",
                    "OPERATION",
                    "EFFECT",
                ]);
                for r in rules {
                    t.row(vec![
                        r.principal,
                        r.resource.as_str().into(),
                        r.name,
                        match r.pattern {
                            Pattern::Literal => "literal".into(),
                            Pattern::Prefix => "prefix".into(),
                        },
                        r.operation.as_str().into(),
                        match r.effect {
                            Effect::Allow => "allow".into(),
                            Effect::Deny => "deny".into(),
                        },
                    ]);
                }
                t.render()
            }
        }
        AclCommand::Add(rule) => {
            let acl = Some(rule_to(rule.rule()));
            let added = reply(client.add_acl(pb::AddAclRequest { acl }).await)?.added;
            if args.json {
                pretty_json(&json!({ "added": added }))
            } else if added {
                "added\n".into()
            } else {
                "already there\n".into()
            }
        }
        AclCommand::Remove(rule) => {
            let acl = Some(rule_to(rule.rule()));
            let removed = reply(client.remove_acl(pb::RemoveAclRequest { acl }).await)?.removed;
            if args.json {
                pretty_json(&json!({ "removed": removed }))
            } else if removed {
                "removed\n".into()
            } else {
                "no such rule\n".into()
            }
        }
    };
    print!("{output}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a random token for PRINCIPAL: prints the token (give it to the client) and its
    /// token-file line (append it to the broker's `auth_token_file`; the broker reloads it).
    New { principal: String },
}

/// Runs a token subcommand.
///
/// # Errors
/// An invalid principal.
pub fn run_token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        TokenCommand::New { principal } => {
            if principal.is_empty()
                || principal == "*"
                || principal.len() > crate::auth::acl::MAX_PRINCIPAL_LEN
                || principal.chars().any(char::is_whitespace)
            {
                anyhow::bail!("a principal is 1 to 255 bytes, without spaces, and not \"*\"");
            }
            let (token, line) = crate::auth::tokens::generate(principal);
            println!("token: {token}");
            println!("token file line: {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct DevCertsArgs {
    /// Directory to write ca.pem, server.pem/.key and client-<NAME>.pem/.key into.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// A client certificate (for mTLS) with this subject CN; repeatable.
    #[arg(long = "client")]
    pub clients: Vec<String>,
}

/// Writes throwaway certificates (never for production).
///
/// # Errors
/// The files cannot be written.
pub fn run_dev_certs(args: &DevCertsArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = args.clients.iter().map(String::as_str).collect();
    let certs = crate::server::devcert::write(&args.out, &names)?;
    println!("CA:          {}", certs.ca.display());
    println!(
        "server cert: {} (localhost, 127.0.0.1, ::1)",
        certs.server_cert.display()
    );
    println!("server key:  {}", certs.server_key.display());
    for (name, cert, key) in &certs.clients {
        println!("client {name}: {} {}", cert.display(), key.display());
    }
    Ok(ExitCode::SUCCESS)
}
