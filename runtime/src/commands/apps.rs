//! `edge apps`, `edge rollback`, `edge delete`: inspect and change a running server.

use super::client::AdminArgs;
use anyhow::Result;
use hyper::Method;

/// List the apps of a running server: current version, routes, deploy time.
#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    admin: AdminArgs,
}

impl AppsArgs {
    /// Prints the table.
    pub fn execute(self) -> Result<()> {
        let apps = self.admin.call(Method::GET, "/apps", None, Vec::new())?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&apps)?);
            return Ok(());
        }
        let apps: Vec<crate::control::AppInfo> = serde_json::from_value(apps)?;
        println!(
            "{:<24} {:<8} {:<20} {:<12} ROUTES",
            "NAME", "VERSION", "DEPLOYED", "VERSIONS"
        );
        for app in apps {
            let deployed = app.deployed_at.map_or("-".to_string(), |t| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
                .to_string()
            });
            let mut routes = vec![format!("{}.*", app.name)];
            routes.extend(app.hosts.iter().cloned());
            routes.extend(app.paths.iter().map(|p| format!("{p}/*")));
            println!(
                "{:<24} {:<8} {:<20} {:<12} {}",
                app.name,
                app.version.as_deref().unwrap_or("(file)"),
                deployed,
                app.versions.len(),
                routes.join(" ")
            );
        }
        Ok(())
    }
}

/// Switch an app back to an older deployed version, instantly (no recompilation).
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The app.
    pub name: String,

    /// The version to switch to [default: the one before the current one].
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,

    #[command(flatten)]
    admin: AdminArgs,
}

impl RollbackArgs {
    /// Rolls back and prints the version now current.
    pub fn execute(self) -> Result<()> {
        let query = self
            .to
            .as_ref()
            .map_or(String::new(), |v| format!("?to={v}"));
        let r = self.admin.call(
            Method::POST,
            &format!("/apps/{}/rollback{query}", self.name),
            None,
            Vec::new(),
        )?;
        println!(
            "`{}` is now at {}",
            self.name,
            r["version"].as_str().unwrap_or("?")
        );
        Ok(())
    }
}

/// Remove an app from a running server, with all its versions.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The app.
    pub name: String,

    #[command(flatten)]
    admin: AdminArgs,
}

impl DeleteArgs {
    /// Deletes and confirms.
    pub fn execute(self) -> Result<()> {
        self.admin.call(
            Method::DELETE,
            &format!("/apps/{}", self.name),
            None,
            Vec::new(),
        )?;
        println!("deleted `{}`", self.name);
        Ok(())
    }
}
