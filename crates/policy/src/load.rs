//! Loading and validating a policy set; the public face of a set.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy as cedar;
use serde_json::Value;

use crate::decision::Decision;
use crate::entities::EntityCache;
use crate::error::{PolicyError, Problem, line_column};
use crate::index::Index;
use crate::request::{Context, Request, Target};
use crate::schema::{Compiled, compiled, list_item_method};

/// A validated policy set, or "allow all" (no policy file). Cheap to clone
/// and share: the set is behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policies(pub(crate) Arc<Inner>);

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per set, behind an `Arc`.
pub(crate) enum Inner {
    AllowAll,
    Set(Set),
}

/// A loaded set; evaluated in `authorize.rs`.
#[derive(Debug)]
pub(crate) struct Set {
    pub(crate) policies: cedar::PolicySet,
    pub(crate) index: Index,
    pub(crate) entities: EntityCache,
    pub(crate) authorizer: cedar::Authorizer,
    pub(crate) schema: Arc<Compiled>,
    pub(crate) forbids: HashSet<cedar::PolicyId>,
    pub(crate) warnings: Vec<Problem>,
    /// Decisions of the current second (`memo.rs`).
    pub(crate) memo: crate::memo::Memo,
}

/// One file's text and how to name it.
struct Source {
    /// For problems: the path as given (or `source_name`).
    name: String,
    /// For policy ids: the file name.
    id_prefix: String,
    text: String,
}

impl Policies {
    /// Loads a policy file, or every `*.cedar` file of a directory (not
    /// recursively; in file-name order; names starting with `.` skipped),
    /// and validates the whole set against [`SCHEMA`](crate::SCHEMA) as
    /// [`parse`](Self::parse) does.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let io = |source| PolicyError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let sources = if meta.is_dir() {
            let mut files = Vec::new();
            for entry in fs::read_dir(path).map_err(io)? {
                let p = entry.map_err(io)?.path();
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name.starts_with('.') || !name.ends_with(".cedar") {
                    continue;
                }
                // `metadata` follows symlinks, as a configuration directory
                // of links (Kubernetes ConfigMaps) needs.
                if fs::metadata(&p).map_err(io)?.is_file() {
                    files.push((name.to_owned(), p));
                }
            }
            files.sort();
            let mut sources = Vec::with_capacity(files.len());
            for (name, p) in files {
                let text = fs::read_to_string(&p).map_err(|source| PolicyError::Io {
                    path: p.clone(),
                    source,
                })?;
                sources.push(Source {
                    name: p.display().to_string(),
                    id_prefix: name,
                    text,
                });
            }
            sources
        } else {
            let text = fs::read_to_string(path).map_err(io)?;
            let id_prefix = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            vec![Source {
                name: path.display().to_string(),
                id_prefix,
                text,
            }]
        };
        Self::from_sources(sources, &path.display().to_string())
    }

    /// Parses and validates policies given as text; `source_name` names
    /// them in problems and policy ids (`<source_name>:<line>`).
    ///
    /// # Validation
    ///
    /// `context.arguments` holds whatever the client sent, and a Cedar
    /// schema cannot declare "a record with any attributes" for strict
    /// validation: open records (`additionalAttributes`) exist only in
    /// Cedar's experimental *partial* validation mode, which also stops
    /// checking that actions and entity types exist. So each set is
    /// validated twice and must pass both:
    ///
    /// 1. **strict**, against the published schema, where `Arguments` is the
    ///    empty record. This catches unknown actions, entity types and
    ///    attributes, misapplied actions and type errors, and rejects an
    ///    argument read without a `has` test (`context.arguments.path` alone
    ///    fails: the attribute may be absent). A test such as
    ///    `context.arguments has path` is typed `false` here, so Cedar does
    ///    not type what follows it in the same `&&` (it can never run);
    /// 2. **partial**, against the schema with `Arguments` open. Argument
    ///    attributes have the bottom type, so what follows
    ///    `context.arguments has path &&` is typed like the rest: a typo'd
    ///    `principal.grups` there is caught by this pass.
    ///
    /// A policy Cedar finds can never apply (an impossible condition, an
    /// action on a resource type it does not apply to) is refused rather
    /// than warned about: a `forbid` that never matches is an open door.
    /// Those findings, and the remaining warnings ([`Policies::warnings`]),
    /// come from the second pass, and from the first for policies that do
    /// not read the arguments (the first pass finds every argument test
    /// "impossible").
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        let source = Source {
            name: source_name.to_owned(),
            id_prefix: source_name.to_owned(),
            text: text.to_owned(),
        };
        Self::from_sources(vec![source], source_name)
    }

    /// No policy file: every request is allowed (the route's scopes, checked
    /// before, decide alone). The gateway's default.
    pub fn allow_all() -> Self {
        Self(Arc::new(Inner::AllowAll))
    }

    /// Whether this is [`allow_all`](Self::allow_all).
    pub fn is_allow_all(&self) -> bool {
        matches!(*self.0, Inner::AllowAll)
    }

    /// The number of policies (0 for `allow_all`).
    pub fn len(&self) -> usize {
        match &*self.0 {
            Inner::AllowAll => 0,
            Inner::Set(s) => s.policies.num_of_policies(),
        }
    }

    /// Whether there are no policies (only `allow_all`: a loaded set has
    /// at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the validator warned about (impossible policies, confusable
    /// identifiers, ...). The set was loaded anyway.
    pub fn warnings(&self) -> &[Problem] {
        match &*self.0 {
            Inner::AllowAll => &[],
            Inner::Set(s) => &s.warnings,
        }
    }

    /// Decides one request. Never fails: a request that cannot be
    /// evaluated is denied with the reason in [`Decision::errors`].
    pub fn authorize(&self, req: &Request<'_>) -> Decision {
        match &*self.0 {
            Inner::AllowAll => Decision::allow_all(),
            Inner::Set(s) => s.authorize(req),
        }
    }

    /// The benchmark's baseline: everything [`authorize`](Self::authorize)
    /// does but the evaluation. Whether the request could be built.
    #[doc(hidden)]
    pub fn prepare_only(&self, req: &Request<'_>) -> bool {
        match &*self.0 {
            Inner::AllowAll => true,
            Inner::Set(s) => s.prepare(req).is_ok(),
        }
    }

    /// For list filtering: whether the caller of `list_request`
    /// (`tools/list`, `resources/list`, `prompts/list`) may use `item`,
    /// i.e. whether the matching `tools/call`, `resources/read` or
    /// `prompts/get` of it, without arguments, would be allowed. False for
    /// other methods and for an item of the wrong kind, so a mistake hides
    /// items rather than showing them. The gateway also authorizes the list
    /// call itself (on the route).
    pub fn may_use(&self, list_request: &Request<'_>, item: Target<'_>) -> bool {
        if self.is_allow_all() {
            return true;
        }
        let Some(action) = list_item_method(list_request.action) else {
            return false;
        };
        let req = Request {
            action,
            target: item,
            context: Context {
                arguments: None,
                ..list_request.context
            },
            ..*list_request
        };
        self.authorize(&req).allowed
    }

    fn from_sources(sources: Vec<Source>, whole_name: &str) -> Result<Self, PolicyError> {
        let schema = compiled()?;
        let mut set = cedar::PolicySet::new();
        let mut syntax = Vec::new();
        let mut invalid = Vec::new();
        // Policy id → index of its source, to locate validation errors.
        let mut origin: HashMap<cedar::PolicyId, usize> = HashMap::new();
        // Policy id → where it was first defined, for duplicates.
        let mut seen: HashMap<String, String> = HashMap::new();

        for (i, src) in sources.iter().enumerate() {
            let parsed = match cedar::PolicySet::from_str(&src.text) {
                Ok(p) => p,
                Err(errs) => {
                    syntax.extend(
                        errs.iter()
                            .map(|e| Problem::from_diagnostic(&src.name, &src.text, e)),
                    );
                    continue;
                }
            };
            let starts = policy_starts(&src.text);
            let start_of = |id: &cedar::PolicyId| {
                // Cedar numbers the policies of a text `policy0`, `policy1`,
                // ... in order (templates included).
                let k = id
                    .to_string()
                    .strip_prefix("policy")?
                    .parse::<usize>()
                    .ok()?;
                Some((k, starts.get(k).copied()))
            };
            for t in parsed.templates() {
                let at = start_of(t.id()).and_then(|(_, o)| o);
                invalid.push(Problem::at(
                    &src.name,
                    &src.text,
                    at,
                    "templates (`?principal`, `?resource`) are not supported: name the entity"
                        .into(),
                ));
            }
            for p in parsed.policies() {
                let (k, at) = start_of(p.id()).unwrap_or((0, None));
                let line = at.map(|o| line_column(&src.text, o).0);
                let id = match (p.annotation("id"), line) {
                    (Some(a), _) if !a.is_empty() => a.to_owned(),
                    (_, Some(line)) => format!("{}:{line}", src.id_prefix),
                    // Not reached: `policy_starts` finds every policy of
                    // a text that parsed.
                    (_, None) => format!("{}:#{}", src.id_prefix, k + 1),
                };
                let here = format!("{}:{}", src.name, line.unwrap_or(0));
                if let Some(prev) = seen.insert(id.clone(), here) {
                    invalid.push(Problem::at(
                        &src.name,
                        &src.text,
                        at,
                        format!("policy id `{id}` is already used by the policy at {prev}"),
                    ));
                    continue;
                }
                let pid = cedar::PolicyId::new(&id);
                if let Err(e) = set.add(p.new_id(pid.clone())) {
                    invalid.push(Problem::at(&src.name, &src.text, at, e.to_string()));
                    continue;
                }
                origin.insert(pid, i);
            }
        }
        if !syntax.is_empty() {
            return Err(PolicyError::Syntax(syntax));
        }
        if !invalid.is_empty() {
            return Err(PolicyError::Invalid(invalid));
        }
        if set.num_of_policies() == 0 {
            return Err(PolicyError::Empty {
                source_name: whole_name.to_owned(),
            });
        }

        let locate = |id: &cedar::PolicyId, d: &dyn DiagnosticDisplay| {
            let src = origin.get(id).and_then(|&i| sources.get(i));
            match src {
                Some(s) => d.problem(&s.name, &s.text),
                None => d.problem(whole_name, ""),
            }
        };
        let strict = schema.strict.validate(&set, cedar::ValidationMode::Strict);
        let partial = schema.open.validate(&set, cedar::ValidationMode::Partial);

        let mut argument_readers = HashSet::new();
        let mut forbids = HashSet::new();
        for p in set.policies() {
            // A policy that cannot be shown as JSON is assumed to read them.
            if p.to_json().map_or(true, |j| reads_context_arguments(&j)) {
                argument_readers.insert(p.id().clone());
            }
            if p.effect() == cedar::Effect::Forbid {
                forbids.insert(p.id().clone());
            }
        }
        // The strict pass finds every policy that tests an argument
        // "impossible": an artifact of the closed `Arguments` record. The
        // partial pass judges those.
        let warnings = partial
            .validation_warnings()
            .chain(strict.validation_warnings().filter(|w| {
                !(matches!(w, cedar::ValidationWarning::ImpossiblePolicy(_))
                    && argument_readers.contains(w.policy_id()))
            }));
        // A policy that can never apply is refused, not warned about: a
        // `forbid` that silently never matches is an open door.
        let (never_applies, warnings): (Vec<_>, Vec<_>) = warnings.partition(|w| {
            matches!(
                w,
                cedar::ValidationWarning::ImpossiblePolicy(_)
                    | cedar::ValidationWarning::InvalidActionApplication(_)
            )
        });
        let problems = dedup(
            strict
                .validation_errors()
                .chain(partial.validation_errors())
                .map(|e| argument_hint(locate(e.policy_id(), e)))
                .chain(never_applies.into_iter().map(|w| locate(w.policy_id(), w))),
        );
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let warnings = dedup(warnings.into_iter().map(|w| locate(w.policy_id(), w)));

        Ok(Self(Arc::new(Inner::Set(Set {
            index: Index::new(
                &set,
                schema
                    .actions
                    .iter()
                    .map(|(name, a)| (name.as_str(), &a.uid)),
                &argument_readers,
            ),
            policies: set,
            entities: EntityCache::default(),
            memo: crate::memo::Memo::default(),
            authorizer: cedar::Authorizer::new(),
            schema,
            forbids,
            warnings,
        }))))
    }
}

/// A Cedar diagnostic, locatable in its source text.
trait DiagnosticDisplay {
    fn problem(&self, source_name: &str, text: &str) -> Problem;
}

impl<T: miette::Diagnostic + std::fmt::Display> DiagnosticDisplay for T {
    fn problem(&self, source_name: &str, text: &str) -> Problem {
        Problem::from_diagnostic(source_name, text, self)
    }
}

/// Cedar says an unguarded `context.arguments.x` is "not found"; say why.
/// (Matched on Cedar's wording: if that changes, only the hint is lost.)
fn argument_hint(mut p: Problem) -> Problem {
    if p.help.is_none() && p.message.contains("attribute `arguments.") {
        p.help = Some(
            "an argument may be absent: test it first, as in \
             `context.arguments has path && context.arguments.path like \"...\"`"
                .into(),
        );
    }
    p
}

fn dedup(problems: impl Iterator<Item = Problem>) -> Vec<Problem> {
    let mut seen = HashSet::new();
    problems.filter(|p| seen.insert(p.clone())).collect()
}

/// Byte offsets where each policy of a Cedar text starts (its first
/// annotation or its effect), in order. Cedar has `//` comments and
/// double-quoted strings with backslash escapes; outside those, `;` ends a
/// policy and nothing else. Run only on text Cedar parsed.
fn policy_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at_policy_start = true;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' if chars.peek().is_some_and(|&(_, n)| n == '/') => {
                for (_, n) in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => {
                if at_policy_start {
                    starts.push(i);
                    at_policy_start = false;
                }
                match c {
                    ';' => at_policy_start = true,
                    '"' => {
                        while let Some((_, n)) = chars.next() {
                            match n {
                                '\\' => {
                                    chars.next();
                                }
                                '"' => break,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    starts
}

/// Whether a policy (as Cedar's JSON form) reads `context.arguments`:
/// `context.arguments` or `context has arguments` anywhere, or `context`
/// used other than through one of its attributes (conservatively yes).
fn reads_context_arguments(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            for op in [".", "has"] {
                if let Some(Value::Object(access)) = m.get(op) {
                    let left_is_context = access
                        .get("left")
                        .and_then(|l| l.get("Var"))
                        .and_then(Value::as_str)
                        == Some("context");
                    if left_is_context && m.len() == 1 {
                        return access.get("attr").and_then(Value::as_str) == Some("arguments");
                    }
                }
            }
            if m.get("Var").and_then(Value::as_str) == Some("context") {
                return true;
            }
            m.values().any(reads_context_arguments)
        }
        Value::Array(a) => a.iter().any(reads_context_arguments),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_starts_skip_comments_and_strings() {
        let text = "// a; comment\npermit(principal, action, resource)\n  when { \"x;\\\"y;\" == \"z\" };\n\n@id(\"b;\")\nforbid(principal, action, resource);";
        let starts = policy_starts(text);
        assert_eq!(starts.len(), 2);
        assert_eq!(line_column(text, starts[0]).0, 2);
        assert_eq!(line_column(text, starts[1]).0, 5);
    }

    #[test]
    fn reads_context_arguments_sees_only_argument_reads() {
        let reads = |src: &str| {
            let p = cedar::Policy::from_str(src).map_err(|e| e.to_string());
            let Ok(p) = p else { panic!("{p:?}") };
            let j = p.to_json().map_err(|e| e.to_string());
            let Ok(j) = j else { panic!("{j:?}") };
            reads_context_arguments(&j)
        };
        assert!(!reads(
            "permit(principal, action, resource) when { context.mtls };"
        ));
        assert!(reads(
            "permit(principal, action, resource) when { context.arguments has path };"
        ));
        assert!(reads(
            "permit(principal, action, resource) when { context[\"arguments\"] == {} };"
        ));
        assert!(reads(
            "permit(principal, action, resource) when { context == {} };"
        ));
    }
}
