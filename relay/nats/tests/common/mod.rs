//! Real `nats-server` processes on free loopback ports, for the tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use eventfold_nats::RelayedEvent;
use futures_util::StreamExt;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `Some(reason)` when the tests cannot run here.
pub fn skip_reason() -> Option<String> {
    match Command::new("nats-server").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("nats-server is not installed (apt-get install nats-server); skipping".to_string()),
    }
}

/// `n` distinct free loopback ports, never the system service's 4222,
/// 6222 or 8222. All are held open until every one is chosen, so no two
/// are the same; another process may still take one before `nats-server`
/// binds it, which `Cluster::start` survives by starting again.
pub fn free_ports(n: usize) -> TestResult<Vec<u16>> {
    let mut held = Vec::new();
    while held.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port != 4222 && port != 6222 && port != 8222 {
            held.push((port, listener));
        }
    }
    Ok(held.into_iter().map(|(port, _)| port).collect())
}

/// One `nats-server` process.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub monitor: u16,
    pub cluster_port: Option<u16>,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }

    fn config(&self, routes: &[u16]) -> String {
        let mut c = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\npid_file: \"{pid}\"\n\
             jetstream {{ store_dir: \"{store}\" }}\n",
            name = self.name,
            port = self.port,
            monitor = self.monitor,
            pid = self.pid_file().display(),
            store = self.dir.join("js").display(),
        );
        if let Some(cp) = self.cluster_port {
            let routes: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
            c.push_str(&format!(
                "cluster {{ name: efc\n listen: 127.0.0.1:{cp}\n routes: [{}] }}\n",
                routes.join(", ")
            ));
        }
        c
    }

    fn start(&mut self, routes: &[u16]) -> TestResult {
        std::fs::create_dir_all(&self.dir)?;
        let conf = self.dir.join("server.conf");
        std::fs::write(&conf, self.config(routes))?;
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let child =
            Command::new("nats-server").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `/healthz` on the monitor port until it answers 200 (bounded).
    pub fn wait_healthy(&mut self, deadline: Duration) -> TestResult {
        let until = Instant::now() + deadline;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(format!("nats-server {} exited with {status}: {log}", self.name).into());
            }
            if healthz(self.monitor) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!("nats-server {} not healthy within {deadline:?}", self.name).into());
            }
            std::thread::sleep(Duration::from_millis(25)); // poll interval, not synchronisation
        }
    }

    fn pid(&self) -> TestResult<String> {
        Ok(std::fs::read_to_string(self.pid_file())?.trim().to_string())
    }

    /// Starts a killed server again, on the same ports and data.
    pub fn restart(&mut self, routes: &[u16]) -> TestResult {
        self.start(routes)?;
        self.wait_healthy(Duration::from_secs(30))
    }

    /// Kills the server by the pid in its pid file (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> TestResult {
        if self.child.is_none() {
            return Ok(());
        }
        let pid = self.pid()?;
        Command::new("kill").args(["-KILL", &pid]).status()?;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = self.pid() {
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
            }
            // Bounded: escalate if it does not go within 10 s.
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn healthz(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
}

/// One server or a cluster; stops every server and deletes their data on drop.
pub struct Cluster {
    pub servers: Vec<Server>,
    root: PathBuf,
}

impl Cluster {
    pub fn single(root: &Path) -> TestResult<Cluster> {
        Self::start(root, 1)
    }

    pub fn start(root: &Path, n: usize) -> TestResult<Cluster> {
        // A port chosen free can be taken by another process before the
        // server binds it: start again on new ports, a bounded number of times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&root.join(format!("attempt-{attempt}")), n) {
                Err(e) if attempt < 5 && e.to_string().contains("address already in use") => {
                    eprintln!("a port was taken before nats-server bound it; starting again: {e}");
                }
                done => return done,
            }
        }
    }

    fn start_once(root: &Path, n: usize) -> TestResult<Cluster> {
        let per_server = if n > 1 { 3 } else { 2 };
        let mut ports = free_ports(n * per_server)?.into_iter();
        let mut next = || ports.next().ok_or("free_ports gave too few ports");
        let mut servers = Vec::new();
        for i in 0..n {
            servers.push(Server {
                name: format!("n{}", i + 1),
                port: next()?,
                monitor: next()?,
                cluster_port: if n > 1 { Some(next()?) } else { None },
                dir: root.join(format!("n{}", i + 1)),
                child: None,
            });
        }
        let routes: Vec<u16> = servers.iter().filter_map(|s| s.cluster_port).collect();
        let mut cluster = Cluster { servers, root: root.to_path_buf() };
        for s in &mut cluster.servers {
            s.start(&routes)?;
        }
        for s in &mut cluster.servers {
            s.wait_healthy(Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// Every server's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.servers.iter().map(Server::url).collect::<Vec<_>>().join(",")
    }

    pub fn by_name(&mut self, name: &str) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.name == name)
    }

    /// Starts the killed server `name` again with its data, and waits until
    /// it answers health checks.
    pub fn restart(&mut self, name: &str) -> TestResult {
        let routes: Vec<u16> = self.servers.iter().filter_map(|s| s.cluster_port).collect();
        self.by_name(name).ok_or_else(|| format!("no server {name}"))?.restart(&routes)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.stop();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A JetStream context on `urls`.
pub async fn jetstream(urls: &str) -> TestResult<jetstream::Context> {
    let addrs = urls.split(',').map(str::parse).collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    let client = async_nats::connect(addrs).await?;
    Ok(jetstream::new(client))
}

/// Waits (bounded) until JetStream answers API requests: a fresh cluster
/// needs a meta leader first. Looking up a stream that does not exist answers
/// "not found" once it is ready.
pub async fn wait_jetstream(js: &jetstream::Context, deadline: Duration) -> TestResult {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let until = Instant::now() + deadline;
    loop {
        let last = match js.get_stream("readiness-probe").await {
            Ok(_) => return Ok(()),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(api)
                    if api.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    return Ok(());
                }
                _ => e.to_string(),
            },
        };
        if Instant::now() >= until {
            return Err(format!("JetStream not ready within {deadline:?}: {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stream's message count, or 0 if it does not exist yet.
pub async fn message_count(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits (bounded) until every replica of `stream` is current: after a
/// killed node comes back, it catches up before the cluster is whole again.
pub async fn wait_replicas_current(js: &jetstream::Context, stream: &str, deadline: Duration) -> TestResult {
    let until = Instant::now() + deadline;
    loop {
        let last = match js.get_stream(stream).await {
            Ok(mut s) => match s.info().await {
                Ok(info) => match &info.cluster {
                    Some(c) if c.leader.is_some() && c.replicas.iter().all(|r| r.current && !r.offline) => {
                        return Ok(());
                    }
                    other => format!("{other:?}"),
                },
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            return Err(format!("replicas of {stream} not current within {deadline:?}: {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message of `stream`, in stream order, decoded. Retries for up to
/// 120 s: while a cluster is electing, or while a replica is down, creating
/// the reading consumer can time out (NATS may place the one-replica
/// consumer on the peer that is down), and under load an ordered consumer
/// was once seen to stall mid-stream; a fresh consumer reads on.
pub async fn read_all(js: &jetstream::Context, stream: &str, prefix: &str) -> TestResult<Vec<RelayedEvent>> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        match read_all_once(js, stream, prefix).await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(e) => eprintln!("reading {stream} failed ({e}); retrying"),
        }
    }
}

async fn read_all_once(js: &jetstream::Context, stream: &str, prefix: &str) -> TestResult<Vec<RelayedEvent>> {
    let mut s = js.get_stream(stream).await.map_err(|e| format!("looking up the stream: {e}"))?;
    let total = s.info().await.map_err(|e| format!("stream info: {e}"))?.state.messages;
    let consumer = s
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{prefix}.>"),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("creating the reading consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("pulling: {e}"))?;
    let mut out = Vec::with_capacity(total as usize);
    while (out.len() as u64) < total {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        match next {
            Ok(Some(m)) => {
                let m = m?;
                out.push(RelayedEvent::from_jetstream(prefix, &m.message)?);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(format!("read {} of {total} messages, then nothing for 10 s", out.len()).into());
            }
        }
    }
    Ok(out)
}
