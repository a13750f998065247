//! A whole medfed network on loopback: PKI, synthetic hospitals, site nodes and a hub, in one
//! process. Used by `medfed demo`, `medfed bench query` and the end-to-end tests, so all three
//! exercise the real path (mTLS Flight between hub and sites, HTTP to the hub).
//!
//! Layout under `DIR`:
//! ```text
//! pki/                         network CA, certificates and Ed25519 signing keys
//! hub/hub.toml                 the hub's config (what `medfed hub serve` reads)
//! hub/policy.rego              who may do what at the hub
//! hub/state.db  hub/audit.db   users, tokens, studies; the hub's audit trail
//! sites/<name>/site.toml       each site's config (what `medfed site serve` reads)
//! sites/<name>/policy.rego     what this site allows (edit it: reloaded on the next request)
//! sites/<name>/audit.db        this site's own audit trail
//! sites/<name>/omop/*.parquet  each site's OMOP tables
//! demo.json                    {hub_url, token, tokens, studies, sites}
//! ```
//!
//! The hub's state is fresh on every start (new users, tokens and studies); audit trails persist
//! and keep growing. People: `rita` (researcher), `ada` (admin), `alan` (auditor) and
//! `cust-<site>` (custodian of each site). Studies: `exact` (all tables, disclosure control
//! only, approved by every site), `dp` (the same under differential privacy with ε = 0.5 per
//! site, approved everywhere) and `unapproved` (no site has decided yet).
//!
//! # Example
//! ```no_run
//! # async fn f() -> Result<(), medfed_devnet::DevnetError> {
//! use medfed_devnet::{Devnet, DevnetConfig};
//! let cfg = DevnetConfig { sites: 3, patients_per_site: 5_000, ..DevnetConfig::new("/tmp/net") };
//! let net = Devnet::start(&cfg, |_, _| {}).await?;
//! println!("ask {} with token {}", net.hub_url, net.token);
//! net.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medfed_core::SiteName;
use medfed_hub::Hub;
use medfed_hub::auth::Principal;
use medfed_hub::config::{Governance, HubConfig, SiteEntry};
use medfed_hub::state::NewStudy;
use medfed_protocol::pki::{self, PkiLayout};
use medfed_site::{Site, SiteConfig};
use medfed_store::StoreConfig;
use medfed_synth::{PROFILES, SynthConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Site names of a demo network, in order; more sites are `site-6`, `site-7`, ...
const NAMES: [&str; 5] = ["north", "south", "east", "west", "central"];

/// Ids of site `i` start at `i * ID_STRIDE`, so pooled tables never collide (OMOP ids are 32-bit:
/// 21 sites of up to 100 M rows per table).
const ID_STRIDE: i32 = 100_000_000;

/// What network to stand up.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Working directory (created if absent; data is reused when the same size and seed).
    pub dir: PathBuf,
    /// Number of sites.
    pub sites: usize,
    /// Synthetic patients per site.
    pub patients_per_site: usize,
    /// Base seed; site `i` uses `seed + i`.
    pub seed: u64,
    /// Per-site query parallelism (None: share the machine's cores between the sites).
    pub target_partitions: Option<usize>,
    /// How long the hub waits for a site.
    pub site_deadline_ms: u64,
    /// Extra tables: name → one file per site, in site order.
    pub extra_tables: Vec<(String, Vec<PathBuf>)>,
    /// When not empty, site `i` holds what `medfed ingest` makes of `ingest[i]` (real exports:
    /// FHIR, HL7 v2, CSV) instead of synthetic patients.
    pub ingest: Vec<medfed_ingest::Inputs>,
    /// The hospital's single sign-on, if the hub should accept its tokens (and the portal offer
    /// it).
    pub oidc: Option<medfed_hub::auth::OidcConfig>,
    /// The hub's `[privacy]` (the network's rules).
    pub hub_privacy: medfed_hub::config::NetworkPrivacy,
}

impl DevnetConfig {
    /// Three sites of 20 000 patients under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sites: 3,
            patients_per_site: 20_000,
            seed: 2026,
            target_partitions: None,
            site_deadline_ms: 10_000,
            extra_tables: Vec::new(),
            ingest: Vec::new(),
            oidc: None,
            hub_privacy: Default::default(),
        }
    }
}

/// Why the network could not be stood up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Synth(#[from] medfed_synth::SynthError),
    #[error(transparent)]
    Site(#[from] medfed_site::SiteError),
    #[error(transparent)]
    Hub(#[from] medfed_hub::HubError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Ingest(#[from] medfed_ingest::IngestError),
    #[error("{0}")]
    Invalid(String),
}

/// What `demo.json` holds, for scripts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoInfo {
    /// The hub's HTTP API.
    pub hub_url: String,
    /// A researcher's bearer token (the same as `tokens.researcher`).
    pub token: String,
    /// Role → bearer token: `researcher`, `auditor`, `admin`, `custodian:<site>`.
    pub tokens: BTreeMap<String, String>,
    /// Study name → study id.
    pub studies: BTreeMap<String, String>,
    /// Site name → its OMOP directory.
    pub sites: BTreeMap<String, PathBuf>,
}

struct RunningSite {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), medfed_site::SiteError>>,
}

impl RunningSite {
    fn spawn(site: Site, listener: TcpListener, cfg: &SiteConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let tls = cfg.tls.clone();
        let task = tokio::spawn(async move {
            site.serve(listener, &tls, async {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }
}

/// A running network.
pub struct Devnet {
    /// The hub's base URL, e.g. `http://127.0.0.1:41234`.
    pub hub_url: String,
    /// A researcher token accepted by the hub.
    pub token: String,
    /// Role → token (see [`DemoInfo::tokens`]).
    pub tokens: BTreeMap<String, String>,
    /// Study name → id (see [`DemoInfo::studies`]).
    pub studies: BTreeMap<String, String>,
    /// Site names in order.
    pub site_names: Vec<SiteName>,
    /// Each site's OMOP directory.
    pub omop_dirs: Vec<PathBuf>,
    /// The hub (for in-process callers).
    pub hub: Arc<Hub>,
    sites: BTreeMap<SiteName, RunningSite>,
    dir: PathBuf,
    hub_stop: oneshot::Sender<()>,
    hub_task: JoinHandle<std::io::Result<()>>,
}

/// Site name for index `i`.
pub fn site_name(i: usize) -> SiteName {
    let s = NAMES
        .get(i)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("site-{}", i + 1));
    SiteName::new(s).expect("valid built-in name")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |e| DevnetError::Io(path.to_path_buf(), e)
}

/// Synthesises site `i` unless the same data is already there (or ingests its inputs).
fn prepare_site(
    cfg: &DevnetConfig,
    i: usize,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PathBuf, DevnetError> {
    if let Some(inputs) = cfg.ingest.get(i) {
        let today = chrono::Utc::now().date_naive();
        medfed_ingest::run(dir, inputs, today, &|_, _, _| {})?;
        return Ok(dir.join("omop"));
    }
    let synth = SynthConfig {
        patients: cfg.patients_per_site,
        seed: cfg.seed + i as u64,
        profile: PROFILES[i % PROFILES.len()].name.to_string(),
        id_base: i32::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(ID_STRIDE))
            .ok_or_else(|| DevnetError::Invalid("at most 21 sites".into()))?,
    };
    let stamp = dir.join("synth.stamp");
    let want = format!(
        "{} {} {} {}",
        synth.patients, synth.seed, synth.profile, synth.id_base
    );
    let omop = dir.join("omop");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && omop.join("person.parquet").exists()
    {
        progress(i, cfg.patients_per_site);
        return Ok(omop);
    }
    let summary = medfed_synth::synthesize(dir, &synth, |done| progress(i, done))?;
    std::fs::write(&stamp, want).map_err(io(&stamp))?;
    Ok(summary.omop_dir)
}

impl Devnet {
    /// Creates (or reuses) the PKI and data, starts every site and the hub on loopback ports.
    /// `progress(site_index, patients_done)` reports synthesis.
    pub async fn start(
        cfg: &DevnetConfig,
        progress: impl Fn(usize, usize) + Sync,
    ) -> Result<Self, DevnetError> {
        if cfg.sites == 0 {
            return Err(DevnetError::Invalid(
                "a network needs at least one site".into(),
            ));
        }
        if !cfg.ingest.is_empty() && cfg.ingest.len() != cfg.sites {
            return Err(DevnetError::Invalid(format!(
                "ingested sites need one set of inputs per site ({} sites)",
                cfg.sites
            )));
        }
        if cfg
            .extra_tables
            .iter()
            .any(|(_, files)| files.len() != cfg.sites)
        {
            return Err(DevnetError::Invalid(format!(
                "each extra table needs one file per site ({} sites)",
                cfg.sites
            )));
        }
        std::fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let names: Vec<SiteName> = (0..cfg.sites).map(site_name).collect();
        let layout = PkiLayout {
            dir: cfg.dir.join("pki"),
        };
        let have_all = layout.ca().exists()
            && layout.hub_dir().join("signing.key").exists()
            && names
                .iter()
                .all(|n| layout.site_dir(n).join("signing.key").exists());
        if !have_all {
            let _ = std::fs::remove_dir_all(&layout.dir);
            pki::init(&layout.dir, "hub", &names)?;
        }

        let partitions = cfg.target_partitions.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            (cores / cfg.sites).max(1)
        });
        let mut sites = BTreeMap::new();
        let mut entries = Vec::new();
        let mut omop_dirs = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let dir = cfg.dir.join("sites").join(name.as_str());
            let omop_dir = tokio::task::block_in_place(|| prepare_site(cfg, i, &dir, &progress))?;
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io(&dir))?;
            let addr = listener.local_addr().map_err(io(&dir))?;
            let extra_tables = cfg
                .extra_tables
                .iter()
                .map(|(t, files)| medfed_store::ExtraTable {
                    name: t.clone(),
                    path: files[i].clone(),
                    identifiers: vec![],
                    null_regex: None,
                })
                .collect();
            let policy = dir.join("policy.rego");
            if !policy.exists() {
                std::fs::write(&policy, medfed_policy::DEFAULT_SITE_POLICY).map_err(io(&policy))?;
            }
            let site_cfg = SiteConfig {
                name: name.clone(),
                listen: addr.to_string(),
                tls: layout.site(name),
                governance: medfed_site::Governance {
                    hub_key: layout.hub_dir().join("signing.pub"),
                    signing_key: layout.site_dir(name).join("signing.key"),
                    policy,
                    audit_db: dir.join("audit.db").display().to_string(),
                },
                privacy: medfed_site::PrivacyConfig {
                    ledger: dir.join("budget.db").display().to_string(),
                    ..Default::default()
                },
                store: StoreConfig {
                    omop_dir: omop_dir.clone(),
                    extra_tables,
                    target_partitions: Some(partitions),
                    key_file: None,
                },
            };
            let path = dir.join("site.toml");
            site_cfg.save(&path).map_err(io(&path))?;
            let site = Site::open(&site_cfg).await?;
            sites.insert(name.clone(), RunningSite::spawn(site, listener, &site_cfg));
            entries.push(SiteEntry {
                name: name.clone(),
                url: format!("https://{addr}"),
            });
            omop_dirs.push(omop_dir);
        }

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io(&cfg.dir))?;
        let addr = listener.local_addr().map_err(io(&cfg.dir))?;
        let hub_dir = cfg.dir.join("hub");
        std::fs::create_dir_all(&hub_dir).map_err(io(&hub_dir))?;
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let _ = std::fs::remove_file(hub_dir.join(f));
        }
        let hub_policy = hub_dir.join("policy.rego");
        if !hub_policy.exists() {
            std::fs::write(&hub_policy, medfed_policy::DEFAULT_HUB_POLICY)
                .map_err(io(&hub_policy))?;
        }
        let hub_cfg = HubConfig {
            listen: addr.to_string(),
            site_deadline_ms: cfg.site_deadline_ms,
            catalog_refresh_s: 300,
            tls: layout.hub(),
            governance: Governance {
                state_db: hub_dir.join("state.db").display().to_string(),
                audit_db: hub_dir.join("audit.db").display().to_string(),
                signing_key: layout.hub_dir().join("signing.key"),
                policy: hub_policy,
            },
            oidc: cfg.oidc.clone(),
            privacy: cfg.hub_privacy.clone(),
            sites: entries,
        };
        let hub_toml = hub_dir.join("hub.toml");
        hub_cfg.save(&hub_toml).map_err(io(&hub_toml))?;
        let hub = Hub::new(&hub_cfg).await?;
        let (hub_stop, stopped) = oneshot::channel::<()>();
        let hub_task = tokio::spawn(medfed_hub::serve(hub.clone(), listener, async {
            let _ = stopped.await;
        }));
        let hub_url = format!("http://{addr}");
        let mut tables: Vec<String> = if cfg.ingest.is_empty() {
            medfed_synth::TABLES.iter().map(|t| t.to_string()).collect()
        } else {
            medfed_ingest::gold::TABLES
                .iter()
                .map(|t| t.to_string())
                .collect()
        };
        tables.extend(cfg.extra_tables.iter().map(|(t, _)| t.clone()));
        // The feature tables every site derives from its OMOP data.
        tables.push("readmission".into());
        let (tokens, studies) = seed_governance(&hub, &names, tables).await?;
        let token = tokens["researcher"].clone();

        let info = DemoInfo {
            hub_url: hub_url.clone(),
            token: token.clone(),
            tokens: tokens.clone(),
            studies: studies.clone(),
            sites: names
                .iter()
                .zip(&omop_dirs)
                .map(|(n, d)| (n.to_string(), d.clone()))
                .collect(),
        };
        let demo_json = cfg.dir.join("demo.json");
        std::fs::write(
            &demo_json,
            serde_json::to_vec_pretty(&info).expect("serialisable"),
        )
        .map_err(io(&demo_json))?;
        Ok(Self {
            hub_url,
            token,
            tokens,
            studies,
            site_names: names,
            omop_dirs,
            hub,
            sites,
            hub_stop,
            hub_task,
            dir: cfg.dir.clone(),
        })
    }

    /// Stops one site (as if its hospital went offline); the hub keeps running.
    pub async fn stop_site(&mut self, name: &SiteName) -> bool {
        let Some(site) = self.sites.remove(name) else {
            return false;
        };
        let _ = site.stop.send(());
        let _ = site.task.await;
        true
    }

    /// Stops a site if it runs and starts it again from its `site.toml` on the same address, as
    /// after a reboot: its ledger, audit trail and policy are whatever its files hold.
    pub async fn restart_site(&mut self, name: &SiteName) -> Result<(), DevnetError> {
        self.stop_site(name).await;
        let path = self.dir.join("sites").join(name.as_str()).join("site.toml");
        let cfg = SiteConfig::load(&path)?;
        let listener = TcpListener::bind(&cfg.listen).await.map_err(io(&path))?;
        let site = Site::open(&cfg).await?;
        self.sites
            .insert(name.clone(), RunningSite::spawn(site, listener, &cfg));
        Ok(())
    }

    /// Stops the hub and every site, waiting for requests in flight.
    pub async fn shutdown(self) {
        let _ = self.hub_stop.send(());
        let _ = self.hub_task.await;
        let _ = self.hub.audit().checkpoint().await;
        for (_, site) in self.sites {
            let _ = site.stop.send(());
            let _ = site.task.await;
        }
    }
}

/// Creates the demo's people and studies through the hub's own (audited) operations.
async fn seed_governance(
    hub: &Hub,
    sites: &[SiteName],
    tables: Vec<String>,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), DevnetError> {
    let state = hub.state();
    let gov = |e: medfed_hub::state::StateError| DevnetError::Hub(e.into());
    let mut people: Vec<(String, String, Vec<String>, String)> = vec![
        (
            "rita".into(),
            "researcher".into(),
            vec![],
            "researcher".into(),
        ),
        ("ada".into(), "admin".into(), vec![], "admin".into()),
        ("alan".into(), "auditor".into(), vec![], "auditor".into()),
    ];
    for s in sites {
        people.push((
            format!("cust-{s}"),
            "custodian".into(),
            vec![s.to_string()],
            format!("custodian:{s}"),
        ));
    }
    let mut tokens = BTreeMap::new();
    let mut principals = BTreeMap::new();
    for (name, role, sites, key) in people {
        state.add_user(&name, &[role], &sites).await.map_err(gov)?;
        let t = state.issue_token(&name).await.map_err(gov)?;
        let who = hub
            .authenticate(Some(&format!("Bearer {}", t.token)), "demo.setup")
            .await?;
        principals.insert(key.clone(), who);
        tokens.insert(key, t.token);
    }
    let rita: &Principal = &principals["researcher"];
    let terms = medfed_core::study::StudyTerms {
        analyses: medfed_core::study::ANALYSES
            .iter()
            .map(|a| a.to_string())
            .collect(),
        tables,
        columns: vec![],
        privacy: medfed_core::study::PrivacyMode::Exact,
        epsilon: None,
    };
    let dp_terms = medfed_core::study::StudyTerms {
        privacy: medfed_core::study::PrivacyMode::Dp,
        epsilon: Some(0.5),
        ..terms.clone()
    };
    let all_sites: Vec<String> = sites.iter().map(|s| s.to_string()).collect();
    let mut studies = BTreeMap::new();
    for (name, title, approve, terms) in [
        (
            "exact",
            "Demo: exact aggregates across the network",
            true,
            &terms,
        ),
        (
            "dp",
            "Demo: differentially private aggregates (ε = 0.5 per site)",
            true,
            &dp_terms,
        ),
        (
            "unapproved",
            "Demo: a study no custodian has approved yet",
            false,
            &terms,
        ),
    ] {
        let study = hub
            .propose(
                rita,
                &NewStudy {
                    title: title.into(),
                    purpose: "Show how a federated study is approved and run.".into(),
                    sites: all_sites.clone(),
                    members: vec![],
                    terms: terms.clone(),
                },
            )
            .await?;
        if approve {
            for s in sites {
                let custodian = &principals[&format!("custodian:{s}")];
                hub.decide(
                    custodian,
                    &study.id,
                    s.as_str(),
                    true,
                    Some("demo approval"),
                )
                .await?;
            }
        }
        studies.insert(name.to_string(), study.id);
    }
    Ok((tokens, studies))
}

/// The non-federated baseline: every site's Parquet for `tables` registered as one table each in
/// a single DataFusion context — what one hospital holding everyone's records would query.
pub async fn pooled_context(
    omop_dirs: &[PathBuf],
    tables: &[&str],
) -> datafusion::error::Result<datafusion::prelude::SessionContext> {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    for table in tables {
        let files: Vec<String> = omop_dirs
            .iter()
            .map(|d| d.join(format!("{table}.parquet")).display().to_string())
            .collect();
        let schema = medfed_core::omop::table(table).map(|t| t.arrow_schema());
        let mut opts = ParquetReadOptions::default();
        if let Some(s) = schema.as_deref() {
            opts = opts.schema(s);
        }
        let df = ctx.read_parquet(files, opts).await?;
        ctx.register_table(*table, df.into_view())?;
    }
    Ok(ctx)
}
