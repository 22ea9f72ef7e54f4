//! The committed `schema.graphql` is the schema the code serves, and it carries every
//! name of the API contract in PRODUCT.md (the schema may grow; these names hold). No
//! output type has a `password` field: passwords are write-only.

use std::path::PathBuf;

const REGENERATE: &str = "regenerate it from the repository root with `cargo run -p mailgate -- print-schema > schema.graphql` and commit it";

fn committed_schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema.graphql")
}

/// One field, argument list and type of an SDL block, or one enum value.
#[derive(Debug)]
struct Member {
    name: String,
    args: String,
    ty: String,
}

/// The members of `kind name { ... }` in `sdl`, without descriptions and directives.
fn members(sdl: &str, kind: &str, name: &str) -> Vec<Member> {
    let mut lines = sdl.lines().map(str::trim);
    let head = format!("{kind} {name}");
    lines
        .by_ref()
        .find(|l| l.strip_prefix(&head).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .unwrap_or_else(|| panic!("`{head}` is not in the schema"));
    let mut out = Vec::new();
    let mut in_description = false;
    let mut pending = String::new();
    for line in lines {
        if line == "}" && pending.is_empty() {
            return out;
        }
        if line == "\"\"\"" {
            in_description = !in_description;
            continue;
        }
        if in_description || line.starts_with('"') || line.is_empty() {
            continue;
        }
        pending.push_str(line);
        pending.push(' ');
        if pending.matches('(').count() > pending.matches(')').count() {
            continue;
        }
        out.push(parse_member(pending.trim()));
        pending.clear();
    }
    panic!("`{head}` has no closing brace");
}

fn parse_member(s: &str) -> Member {
    let end = s
        .find(|c: char| c == '(' || c == ':' || c.is_whitespace())
        .unwrap_or(s.len());
    let name = s[..end].to_owned();
    let mut rest = &s[end..];
    let mut args = String::new();
    if rest.starts_with('(') {
        let close = rest.rfind(')').expect("closing parenthesis");
        args = rest[1..close].split_whitespace().collect::<Vec<_>>().join(" ");
        rest = &rest[close + 1..];
    }
    let ty = rest
        .trim_start()
        .strip_prefix(':')
        .map_or("", |t| t.split_whitespace().next().unwrap_or(""))
        .to_owned();
    Member { name, args, ty }
}

fn names(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.name.as_str()).collect()
}

/// Every `type`/`input`/`enum` name declared in the SDL.
fn declared(sdl: &str, kind: &str) -> Vec<String> {
    let prefix = format!("{kind} ");
    sdl.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.split([' ', '{']).next().unwrap_or("").to_owned())
        .collect()
}

/// The name of the root type of `operation` (`query`, `mutation`) in the `schema { }` block.
fn root_type(sdl: &str, operation: &str) -> String {
    let block = sdl
        .split("\nschema {")
        .nth(1)
        .unwrap_or_else(|| panic!("no schema block in the SDL"));
    let block = block.split('}').next().unwrap_or("");
    block
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&format!("{operation}:")))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no {operation} root type in `schema {{{block}}}`"))
}

/// Asserts `field` of `type_name` exists with exactly the contract's type (and, where
/// given, arguments).
fn assert_field(sdl: &str, kind: &str, type_name: &str, field: &str, args: Option<&str>, ty: &str) {
    let list = members(sdl, kind, type_name);
    let m = list
        .iter()
        .find(|m| m.name == field)
        .unwrap_or_else(|| panic!("{type_name}.{field} is missing; it has {:?}", names(&list)));
    assert_eq!(m.ty, ty, "{type_name}.{field}: type");
    if let Some(args) = args {
        assert!(
            m.args.starts_with(args),
            "{type_name}.{field}: arguments `{}` should start with `{args}`",
            m.args
        );
    }
}

#[test]
fn committed_schema_is_the_served_schema() {
    let path = committed_schema_path();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read ({e}); {REGENERATE}", path.display()));
    let current = graphql_api::schema::sdl();
    if committed != current {
        let first_difference = committed
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(current.lines().count()));
        panic!(
            "schema.graphql differs from the schema the code serves (first at line {}: committed {:?}, code {:?}); {REGENERATE}",
            first_difference + 1,
            committed.lines().nth(first_difference),
            current.lines().nth(first_difference),
        );
    }
}

/// The contract writes `type Query` and `type Mutation`; clients see these names in
/// `__typename`, generated code and cache configuration.
#[test]
fn root_types_are_named_query_and_mutation() {
    let sdl = graphql_api::schema::sdl();
    assert_eq!(root_type(&sdl, "query"), "Query", "the query root type's name");
    assert_eq!(root_type(&sdl, "mutation"), "Mutation", "the mutation root type's name");
}

#[test]
fn contract_enums_have_exactly_their_values() {
    let sdl = graphql_api::schema::sdl();
    for (name, values) in [
        ("Plan", vec!["ECONOMY", "BASIC", "PRO", "SHARE", "BIZ"]),
        (
            "MailServerKind",
            vec![
                "CUSTOM",
                "GMAIL",
                "GOOGLE_WORKSPACE",
                "MICROSOFT_365",
                "OUTLOOK_COM",
                "YAHOO_JAPAN",
                "ICLOUD",
                "AMAZON_SES",
                "SENDGRID",
                "XSERVER",
                "SAKURA",
                "LOLIPOP",
                "CONOHA_WING",
                "OCN",
                "BIGLOBE",
                "SO_NET",
            ],
        ),
        ("MailEncryption", vec!["NONE", "SSL", "STARTTLS"]),
        ("SenderSource", vec!["CUSTOM", "PLATFORM_DEFAULT"]),
    ] {
        let list = members(&sdl, "enum", name);
        let mut got = names(&list);
        let mut want = values.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "enum {name}");
    }
}

#[test]
fn contract_operations_exist_with_their_types() {
    let sdl = graphql_api::schema::sdl();
    let query = root_type(&sdl, "query");
    let mutation = root_type(&sdl, "mutation");
    let q = |field, args, ty| assert_field(&sdl, "type", &query, field, args, ty);
    q("viewer", None, "Viewer!");
    q("tenant", Some("id: ID!"), "Tenant");
    q("tenants", None, "TenantConnection!");
    q("plans", None, "[PlanInfo!]!");
    q("mailServerPresets", None, "[MailServerPreset!]!");
    let tenants = members(&sdl, "type", &query)
        .into_iter()
        .find(|m| m.name == "tenants")
        .expect("tenants");
    for arg in ["first: Int", "after: String", "plan: Plan"] {
        assert!(tenants.args.contains(arg), "tenants({}) takes {arg}", tenants.args);
    }

    let m = |field, args, ty| assert_field(&sdl, "type", &mutation, field, args, ty);
    m("createTenant", Some("name: String!, plan: Plan!"), "Tenant!");
    m("changeTenantPlan", Some("tenantId: ID!, plan: Plan!"), "Tenant!");
    m(
        "updateMailSettings",
        Some("tenantId: ID!, input: MailSettingsInput!"),
        "MailSettings",
    );
    m("clearMailSettings", Some("tenantId: ID!"), "Tenant!");
}

#[test]
fn contract_types_have_their_fields() {
    let sdl = graphql_api::schema::sdl();
    let expect = |kind: &str, type_name: &str, fields: &[(&str, &str)]| {
        for (field, ty) in fields {
            assert_field(&sdl, kind, type_name, field, None, ty);
        }
    };
    let viewer = members(&sdl, "type", "Viewer");
    for field in ["role", "tenant"] {
        assert!(
            names(&viewer).contains(&field),
            "Viewer.{field}: the caller's role and tenant; it has {:?}",
            names(&viewer)
        );
    }
    expect(
        "type",
        "Tenant",
        &[
            ("id", "ID!"),
            ("name", "String!"),
            ("plan", "Plan!"),
            ("canOverrideSender", "Boolean!"),
            ("mailSettings", "MailSettings"),
            ("effectiveSender", "EffectiveSender!"),
        ],
    );
    expect(
        "type",
        "MailSettings",
        &[
            ("serverKind", "MailServerKind!"),
            ("host", "String!"),
            ("port", "Int!"),
            ("fromAddress", "String!"),
            ("fromName", "String"),
            ("smtpAuth", "Boolean!"),
            ("username", "String"),
            ("hasPassword", "Boolean!"),
            ("encryption", "MailEncryption!"),
            ("popBeforeSmtp", "PopBeforeSmtp"),
            ("localHostname", "String"),
            ("sendIntervalMs", "Int!"),
            ("active", "Boolean!"),
            ("version", "Int!"),
            ("updatedAt", "String!"),
        ],
    );
    expect(
        "type",
        "PopBeforeSmtp",
        &[
            ("host", "String!"),
            ("port", "Int!"),
            ("username", "String!"),
            ("hasPassword", "Boolean!"),
            ("tls", "Boolean!"),
        ],
    );
    expect(
        "type",
        "EffectiveSender",
        &[
            ("address", "String!"),
            ("name", "String"),
            ("source", "SenderSource!"),
            ("reason", "String!"),
        ],
    );
    expect(
        "type",
        "PlanInfo",
        &[
            ("code", "Plan!"),
            ("name", "String!"),
            ("canOverrideSender", "Boolean!"),
        ],
    );
    expect(
        "input",
        "MailSettingsInput",
        &[
            ("serverKind", "MailServerKind"),
            ("host", "String"),
            ("port", "Int"),
            ("fromAddress", "String"),
            ("fromName", "String"),
            ("smtpAuth", "Boolean"),
            ("username", "String"),
            ("password", "String"),
            ("encryption", "MailEncryption"),
            ("popBeforeSmtp", "PopBeforeSmtpInput"),
            ("localHostname", "String"),
            ("sendIntervalMs", "Int"),
            ("expectedVersion", "Int"),
        ],
    );
}

#[test]
fn no_output_type_returns_a_password() {
    let sdl = graphql_api::schema::sdl();
    let types = declared(&sdl, "type");
    assert!(
        types.iter().any(|t| t == "MailSettings"),
        "the scan sees the output types: {types:?}"
    );
    for type_name in &types {
        for m in members(&sdl, "type", type_name) {
            let lower = m.name.to_lowercase();
            assert!(
                !lower.contains("password") || m.name == "hasPassword",
                "{type_name}.{} would return a password; output types only say hasPassword",
                m.name
            );
        }
    }
    // The inputs do take passwords (write-only), so the scan above is meaningful.
    assert!(names(&members(&sdl, "input", "MailSettingsInput")).contains(&"password"));
}
