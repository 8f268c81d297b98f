//! `weir plugin inspect|install`: look inside a WebAssembly connector and add it to the
//! plugin directory, versions side by side (`<dir>/<name>/<version>.wasm`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_host::types::{ConfigType, PluginKind};
use weir_host::{Host, HostConfig};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCmd {
    /// Print a plugin's world, name, version, kind and configuration definition.
    Inspect { file: PathBuf },
    /// Copy a plugin into the plugin directory as <name>/<version>.wasm.
    Install {
        file: PathBuf,
        /// Plugin directory.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// Replace an installed plugin of the same name and version.
        #[arg(long)]
        force: bool,
    },
}

fn kind(k: PluginKind) -> &'static str {
    match k {
        PluginKind::Source => "source",
        PluginKind::Sink => "sink",
        PluginKind::Transform => "transform",
    }
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::String => "string",
        ConfigType::Int => "int",
        ConfigType::Long => "long",
        ConfigType::Double => "double",
        ConfigType::Boolean => "boolean",
        ConfigType::List => "list",
        ConfigType::Password => "password",
    }
}

fn describe(file: &Path) -> anyhow::Result<(weir_host::types::Descriptor, Vec<String>)> {
    let host = Host::new(HostConfig::default())?;
    let plugin = host.load(file)?;
    let exports = plugin.exports(&host);
    let d = plugin.describe(&host)?;
    Ok((d, exports))
}

pub fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Inspect { file } => {
            let (d, exports) = describe(&file)?;
            println!("plugin:      {} {}", d.name, d.version);
            println!("kind:        {}", kind(d.kind));
            println!("exports:     {}", exports.join(", "));
            println!("description: {}", d.description);
            if d.config.is_empty() {
                println!("config:      (none)");
            } else {
                println!("config:");
                for k in d.config {
                    let mut flags = vec![type_name(k.type_).to_string()];
                    if k.required {
                        flags.push("required".into());
                    }
                    if k.secret {
                        flags.push("secret".into());
                    }
                    if let Some(def) = &k.default_value {
                        flags.push(format!("default {def}"));
                    }
                    println!("  {} ({}): {}", k.name, flags.join(", "), k.documentation);
                }
            }
        }
        PluginCmd::Install { file, dir, force } => {
            let (d, _) = describe(&file)?;
            let safe = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    && s != "."
                    && s != ".."
            };
            if !safe(&d.name) || !safe(&d.version) {
                anyhow::bail!(
                    "plugin name {:?} or version {:?} is not usable as a file name",
                    d.name,
                    d.version
                );
            }
            let target = dir.join(&d.name).join(format!("{}.wasm", d.version));
            if target.exists() && !force {
                anyhow::bail!(
                    "{} is already installed at {} (use --force to replace it)",
                    d.name,
                    target.display()
                );
            }
            std::fs::create_dir_all(target.parent().unwrap_or(&dir))
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let tmp = target.with_extension("wasm.tmp");
            std::fs::copy(&file, &tmp)
                .with_context(|| format!("cannot copy {}", file.display()))?;
            std::fs::rename(&tmp, &target)?;
            println!(
                "installed {} {} ({}) at {}",
                d.name,
                d.version,
                kind(d.kind),
                target.display()
            );
        }
    }
    Ok(())
}
