//! Layered settings for a clap subcommand: a TOML file named by `--config`,
//! under `ATTEST_GATE_<KEY>` environment variables, under flags.
//!
//! Every key of the file is the long name of one of the subcommand's flags
//! (`data-dir = "/var/lib/attest-gate"`), so the file, the environment
//! (`ATTEST_GATE_DATA_DIR`) and the command line are one vocabulary, and
//! every value is parsed and checked by the command's own clap value parser:
//! a bad value in the file is refused exactly as the same flag would be. An
//! unknown key is an error that names it.
//!
//! The layering works on the argument list: the file's settings become flags
//! placed before the user's own, for the keys that neither a flag nor the
//! environment sets. clap reads an environment variable only for a flag that
//! is absent from the list, so a set variable beats the file, and a flag
//! beats both.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// The flag that names the file.
pub const CONFIG_FLAG: &str = "config";
/// Prefix of every environment variable: `ATTEST_GATE_` + the key in upper
/// case with `-` as `_`.
pub const ENV_PREFIX: &str = "ATTEST_GATE_";
/// A settings file larger than this is not one.
const MAX_FILE_LEN: u64 = 1 << 20;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not TOML.
    #[error("{path}: not TOML: {reason}")]
    NotToml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A key that is no flag of the command.
    #[error("{path}: unknown key `{key}` (the keys are the flags of `{command}`)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The subcommand.
        command: String,
    },
    /// A value of a shape no flag takes (a table, a date, a list for a
    /// single-valued flag, `true` for a flag that takes a value).
    #[error("{path}: key `{key}`: {reason}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The command line itself (with the file's settings) did not parse:
    /// clap's own message, which names the flag and the file's value.
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

/// The environment variable of `key`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase().replace('-', "_"))
}

/// `command`'s subcommand at `path` (e.g. `["serve"]`), every flag of it
/// given its `ATTEST_GATE_<KEY>` variable (a flag that already names one
/// keeps it) with values hidden from `--help`, and a `--config FILE` flag.
/// clap reads the variables here, when the command is built.
pub fn layered(mut command: Command, path: &[&str]) -> Command {
    let Some((first, rest)) = path.split_first() else {
        return with_env(command).arg(config_arg());
    };
    let name = (*first).to_string();
    let rest: Vec<&str> = rest.to_vec();
    command = command.mut_subcommand(name, move |sub| layered(sub, &rest));
    command
}

fn config_arg() -> clap::Arg {
    clap::Arg::new(CONFIG_FLAG)
        .long(CONFIG_FLAG)
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("Settings file (TOML; keys are these flags' long names); ATTEST_GATE_<KEY> variables override it, flags override both")
}

fn with_env(command: Command) -> Command {
    command.mut_args(|arg| match arg.get_long() {
        Some(long) if arg.get_env().is_none() && long != "help" && long != "version" => {
            let env = env_name(long);
            arg.env(env).hide_env_values(true)
        }
        _ => arg,
    })
}

/// The subcommand at `path` of `command` (already [`layered`]).
fn find<'a>(command: &'a Command, path: &[&str]) -> Option<&'a Command> {
    path.iter()
        .try_fold(command, |c, name| c.find_subcommand(name))
}

/// The value of `--config FILE` / `--config=FILE` in `argv`, if any.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            return None;
        }
        if arg == format!("--{CONFIG_FLAG}") {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix(&format!("--{CONFIG_FLAG}=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// Whether `argv` sets flag `long` (or its short form) itself.
fn on_command_line(argv: &[OsString], long: &str, short: Option<char>) -> bool {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "--")
        .any(|a| {
            a == format!("--{long}")
                || a.starts_with(&format!("--{long}="))
                || short.is_some_and(|s| a.starts_with(&format!("-{s}")) && !a.starts_with("--"))
        })
}

/// The flags the file's settings stand for (those neither `argv` nor the
/// environment sets), checked against `sub`'s flags, and the keys they set.
fn file_flags(
    sub: &Command,
    file: &Path,
    argv: &[OsString],
) -> Result<(Vec<OsString>, Vec<String>), ConfigError> {
    let table = read_table(file)?;
    let mut flags = Vec::new();
    let mut keys = Vec::new();
    for (key, value) in table {
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != CONFIG_FLAG)
            .ok_or_else(|| ConfigError::UnknownKey {
                path: file.to_path_buf(),
                key: key.clone(),
                command: sub.get_name().to_string(),
            })?;
        let env_set = arg
            .get_env()
            .is_some_and(|name| std::env::var_os(name).is_some());
        if env_set || on_command_line(argv, &key, arg.get_short()) {
            continue;
        }
        let bad = |reason: &str| ConfigError::BadValue {
            path: file.to_path_buf(),
            key: key.clone(),
            reason: reason.to_string(),
        };
        keys.push(key.clone());
        let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let values: Vec<String> = match value {
            toml::Value::Boolean(on) if switch => {
                if on {
                    flags.push(OsString::from(format!("--{key}")));
                }
                continue;
            }
            _ if switch => return Err(bad("this flag is a switch: true or false")),
            toml::Value::Array(items) if many => items
                .into_iter()
                .map(|item| scalar(item).ok_or_else(|| bad("a list of strings or numbers")))
                .collect::<Result<_, _>>()?,
            toml::Value::Array(_) => return Err(bad("one value, not a list")),
            other => vec![scalar(other).ok_or_else(|| bad("a string or a number"))?],
        };
        for value in values {
            flags.push(OsString::from(format!("--{key}={value}")));
        }
    }
    Ok((flags, keys))
}

fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn read_table(file: &Path) -> Result<toml::Table, ConfigError> {
    let unreadable = |reason: String| ConfigError::Unreadable {
        path: file.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(file)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if len > MAX_FILE_LEN {
        return Err(unreadable(format!("{len} bytes, at most {MAX_FILE_LEN}")));
    }
    let text = std::fs::read_to_string(file).map_err(|e| unreadable(e.to_string()))?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::NotToml {
            path: file.to_path_buf(),
            reason: e.message().to_string(),
        })
}

/// What the command line, the environment and the file said.
#[derive(Debug)]
pub struct Settings {
    /// The parsed command line, the file's settings included.
    pub matches: ArgMatches,
    /// The keys whose value came from the file.
    pub from_file: Vec<String>,
}

/// Parses `argv` with `command` (already [`layered`] at `path`): the file
/// named by `--config`, if any, under the environment, under the flags.
pub fn matches(
    command: Command,
    path: &[&str],
    argv: Vec<OsString>,
) -> Result<Settings, ConfigError> {
    let Some(file) = config_path(&argv) else {
        return Ok(Settings {
            matches: command.try_get_matches_from(argv)?,
            from_file: Vec::new(),
        });
    };
    let sub = find(&command, path).ok_or_else(|| ConfigError::UnknownKey {
        path: file.clone(),
        key: CONFIG_FLAG.into(),
        command: path.join(" "),
    })?;
    let (flags, from_file) = file_flags(sub, &file, &argv)?;
    // The file's flags go right after the subcommand's name, before the
    // user's (which need no precedence among them: they name other keys).
    let at = subcommand_end(&argv, path);
    let (before, after) = argv.split_at(at.min(argv.len()));
    let mut full: Vec<OsString> = before.to_vec();
    full.extend(flags);
    full.extend_from_slice(after);
    Ok(Settings {
        matches: command.try_get_matches_from(full)?,
        from_file,
    })
}

/// Where the subcommand's own arguments start in `argv`.
fn subcommand_end(argv: &[OsString], path: &[&str]) -> usize {
    let mut at = 1;
    for name in path {
        match argv
            .iter()
            .skip(at)
            .position(|a| a.as_os_str() == OsStr::new(name))
        {
            Some(i) => at += i + 1,
            None => return argv.len(),
        }
    }
    at
}

/// The effective settings of the subcommand at `path`, one
/// `key = value  # source` line each (TOML), for `config check`. The values
/// of `secret_keys` are shown with any password in a URL replaced by `***`.
pub fn effective(
    command: &Command,
    path: &[&str],
    settings: &Settings,
    secret_keys: &[&str],
) -> String {
    let (Some(sub), Some(sub_matches)) = (
        find(command, path),
        path.iter()
            .try_fold(&settings.matches, |m, name| m.subcommand_matches(name)),
    ) else {
        return String::new();
    };
    let mut out = String::new();
    for arg in sub.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if long == CONFIG_FLAG || long == "help" || long == "version" {
            continue;
        }
        let source = match sub_matches.value_source(id) {
            Some(ValueSource::CommandLine) if settings.from_file.iter().any(|k| k == long) => {
                "file"
            }
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let values: Vec<String> = sub_matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let values: Vec<String> = if secret_keys.contains(&long) {
            values.iter().map(|v| redact_url(v)).collect()
        } else {
            values
        };
        let rendered = match values.as_slice() {
            [] => continue,
            [one] if !matches!(arg.get_action(), ArgAction::Append) => quote(one),
            many => format!(
                "[{}]",
                many.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
            ),
        };
        out.push_str(&format!("{long} = {rendered}  # {source}\n"));
    }
    out
}

fn quote(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// Parses this process's command line as `C`, with the subcommand at
/// `path` layered (file, environment, flags); on an error prints it and
/// exits 2, as clap does for a usage error.
pub fn parse_or_exit<C: clap::Parser>(path: &[&str]) -> C {
    let command = layered(C::command(), path);
    let settings = match matches(command, path, std::env::args_os().collect()) {
        Ok(settings) => settings,
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("{}: {e}", C::command().get_name());
            std::process::exit(2)
        }
    };
    C::from_arg_matches(&settings.matches).unwrap_or_else(|e| e.exit())
}

/// `config check FILE`: `file` parsed as `<path> --config FILE` would parse
/// it (with this process's environment), checked to build a `C`, then the
/// effective settings ([`effective`]).
pub fn check<C: clap::Parser>(
    path: &[&str],
    file: &Path,
    secret_keys: &[&str],
) -> Result<String, ConfigError> {
    let command = layered(C::command(), path);
    let mut argv: Vec<OsString> = vec![command.get_name().into()];
    argv.extend(path.iter().map(OsString::from));
    argv.extend([
        OsString::from(format!("--{CONFIG_FLAG}")),
        file.as_os_str().to_owned(),
    ]);
    let settings = matches(command.clone(), path, argv)?;
    C::from_arg_matches(&settings.matches)?;
    Ok(effective(&command, path, &settings, secret_keys))
}

/// The `config` subcommand both binaries have.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a settings file and print the effective settings, one TOML line
    /// each with its source (file, `ATTEST_GATE_<KEY>` variable, flag,
    /// default), URL passwords hidden.
    Check {
        /// The TOML file: its keys are the settings command's long flag names.
        file: PathBuf,
    },
}

impl ConfigCommand {
    /// Runs it for a `C` whose settings command is at `path`: prints the
    /// effective settings, or returns why the file is refused.
    pub fn run<C: clap::Parser>(
        &self,
        path: &[&str],
        secret_keys: &[&str],
    ) -> Result<(), ConfigError> {
        match self {
            Self::Check { file } => {
                print!("{}", check::<C>(path, file, secret_keys)?);
                Ok(())
            }
        }
    }
}

/// A URL with its password hidden: `scheme://user:***@host...` (the
/// userinfo ends at the authority's last `@`), and the values of `password`
/// and `sslpassword` query parameters as `***`.
pub fn redact_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use clap::{value_parser, Arg};

    /// A command shaped like `verifier serve`: a value with a default, a
    /// number, a switch, a repeatable flag and one with its own variable.
    /// `tag` keeps each test's variables apart (tests share the process).
    fn command(tag: &str) -> Command {
        let serve = Command::new("serve")
            .arg(
                Arg::new("listen")
                    .long(format!("{tag}-listen"))
                    .default_value("127.0.0.1:8443"),
            )
            .arg(
                Arg::new("ttl")
                    .long(format!("{tag}-ttl"))
                    .value_parser(value_parser!(u32)),
            )
            .arg(
                Arg::new("dev")
                    .long(format!("{tag}-dev"))
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("proxy")
                    .long(format!("{tag}-proxy"))
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("database")
                    .long(format!("{tag}-database"))
                    .env(format!("{tag}_DB_URL").to_uppercase()),
            );
        layered(Command::new("verifier").subcommand(serve), &["serve"])
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("verifier")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn serve(settings: &Settings) -> &ArgMatches {
        settings.matches.subcommand_matches("serve").unwrap()
    }

    #[test]
    fn the_file_is_under_the_environment_which_is_under_the_flags() {
        let f = file("p1-listen = \"0.0.0.0:1\"\np1-ttl = 30\np1-dev = true\np1-proxy = [\"10.0.0.0/8\", \"::1/128\"]\n");
        let path = f.path().to_str().unwrap();
        // The file alone.
        let s = matches(
            command("p1"),
            &["serve"],
            argv(&["serve", "--config", path]),
        )
        .unwrap();
        let m = serve(&s);
        assert_eq!(m.get_one::<String>("listen").unwrap(), "0.0.0.0:1");
        assert_eq!(*m.get_one::<u32>("ttl").unwrap(), 30);
        assert!(m.get_flag("dev"));
        assert_eq!(
            m.get_many::<String>("proxy").unwrap().collect::<Vec<_>>(),
            ["10.0.0.0/8", "::1/128"]
        );
        assert_eq!(s.from_file.len(), 4);
        // The environment over the file.
        std::env::set_var("ATTEST_GATE_P1_TTL", "40");
        let s = matches(
            command("p1"),
            &["serve"],
            argv(&["serve", "--config", path]),
        )
        .unwrap();
        assert_eq!(*serve(&s).get_one::<u32>("ttl").unwrap(), 40);
        // A flag over both; a repeated flag replaces the file's list.
        let s = matches(
            command("p1"),
            &["serve"],
            argv(&[
                "serve",
                "--p1-ttl",
                "50",
                "--config",
                path,
                "--p1-proxy=1.2.3.4/32",
            ]),
        )
        .unwrap();
        let m = serve(&s);
        assert_eq!(*m.get_one::<u32>("ttl").unwrap(), 50);
        assert_eq!(
            m.get_many::<String>("proxy").unwrap().collect::<Vec<_>>(),
            ["1.2.3.4/32"]
        );
        assert_eq!(m.get_one::<String>("listen").unwrap(), "0.0.0.0:1");
        std::env::remove_var("ATTEST_GATE_P1_TTL");
        // No file: defaults, and nothing from a file.
        let s = matches(command("p1"), &["serve"], argv(&["serve"])).unwrap();
        assert_eq!(
            serve(&s).get_one::<String>("listen").unwrap(),
            "127.0.0.1:8443"
        );
        assert!(s.from_file.is_empty());
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let f = file("p2-listen = \"0.0.0.0:1\"\np2-lisen = \"typo\"\n");
        let err = matches(
            command("p2"),
            &["serve"],
            argv(&["serve", "--config", f.path().to_str().unwrap()]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "p2-lisen"),
            "{err}"
        );
        assert!(err.to_string().contains("p2-lisen"));
        // `config` itself is not a setting of the file.
        let f = file("config = \"other.toml\"\n");
        let err = matches(
            command("p2"),
            &["serve"],
            argv(&["serve", "--config", f.path().to_str().unwrap()]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "config"),
            "{err}"
        );
    }

    #[test]
    fn values_are_checked_as_the_flags_are() {
        let bad = [
            ("p3-ttl = \"soon\"", "clap"),
            ("p3-ttl = -1", "clap"),
            ("p3-dev = \"yes\"", "switch"),
            ("p3-listen = [\"a\", \"b\"]", "list"),
            ("p3-listen = { a = 1 }", "table"),
            ("p3-proxy = [{ a = 1 }]", "list item"),
            ("p3-listen = ", "toml"),
        ];
        for (text, what) in bad {
            let f = file(text);
            let err = matches(
                command("p3"),
                &["serve"],
                argv(&["serve", "--config", f.path().to_str().unwrap()]),
            )
            .unwrap_err();
            let ok = match what {
                "clap" => matches!(err, ConfigError::Clap(_)),
                "toml" => matches!(err, ConfigError::NotToml { .. }),
                _ => matches!(err, ConfigError::BadValue { .. }),
            };
            assert!(ok, "{text}: {err:?}");
        }
        let err = matches(
            command("p3"),
            &["serve"],
            argv(&["serve", "--config", "/nonexistent/attest-gate.toml"]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Unreadable { .. }), "{err:?}");
    }

    #[test]
    fn effective_settings_name_their_source_and_hide_passwords() {
        let f = file("p4-database = \"postgres://app:hunter2@db/attest\"\np4-ttl = 30\n");
        let path = f.path().to_str().unwrap();
        let cmd = command("p4");
        let s = matches(
            cmd.clone(),
            &["serve"],
            argv(&["serve", "--config", path, "--p4-dev"]),
        )
        .unwrap();
        let shown = effective(&cmd, &["serve"], &s, &["p4-database"]);
        assert!(
            shown.contains("p4-database = \"postgres://app:***@db/attest\"  # file"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("p4-ttl = \"30\"  # file"), "{shown}");
        assert!(shown.contains("p4-dev = \"true\"  # flag"), "{shown}");
        assert!(
            shown.contains("p4-listen = \"127.0.0.1:8443\"  # default"),
            "{shown}"
        );
        // What a flag's own variable says counts as the environment (clap
        // reads variables when the command is built).
        std::env::set_var("P4_DB_URL", "sqlite:/tmp/x.db");
        let cmd = command("p4");
        let s = matches(cmd.clone(), &["serve"], argv(&["serve", "--config", path])).unwrap();
        let shown = effective(&cmd, &["serve"], &s, &["p4-database"]);
        assert!(
            shown.contains("p4-database = \"sqlite:/tmp/x.db\"  # environment"),
            "{shown}"
        );
        std::env::remove_var("P4_DB_URL");
    }

    #[test]
    fn every_flag_gets_its_variable_and_a_named_one_keeps_its_own() {
        let cmd = command("p5");
        let serve = cmd.find_subcommand("serve").unwrap();
        let env = |id: &str| {
            serve
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(env("ttl").as_deref(), Some("ATTEST_GATE_P5_TTL"));
        assert_eq!(env("database").as_deref(), Some("P5_DB_URL"));
        assert!(serve
            .get_arguments()
            .any(|a| a.get_long() == Some(CONFIG_FLAG)));
        assert_eq!(redact_url("sqlite:/x"), "sqlite:/x");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=secret&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact_url("postgres://u:p@h?Password=s"),
            "postgres://u:***@h?Password=***"
        );
    }
}
