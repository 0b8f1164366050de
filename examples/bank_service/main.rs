//! A bank account service over HTTP: commands, state and history reads, and
//! the event log as server-sent events (see `service.rs` for the routes).
//!
//! ```text
//! cargo run --release --example bank_service --features async [-- --addr 127.0.0.1:3000] [--data DIR]
//! ```
//!
//! The address also comes from `BANK_ADDR` (default `127.0.0.1:3000`; port
//! 0 picks a free one), the store directory from `BANK_DATA` (default
//! `./eventfold-bank-data`). The bound address is printed on the first
//! line of stdout. Ctrl-C closes the store, which ends the event streams,
//! and the server stops.
//!
//! ```text
//! curl -X POST localhost:3000/accounts/ann/open -H 'content-type: application/json' -d '{"owner":"Ann"}'
//! curl -X POST localhost:3000/accounts/ann/deposit -H 'content-type: application/json' -d '{"amount":1250}'
//! curl localhost:3000/accounts/ann
//! curl -N localhost:3000/events
//! ```

mod service;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use eventfold::Store;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `--name VALUE` from the arguments, else the environment variable, else the default.
fn setting(args: &[String], flag: &str, var: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_string())
}

async fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = setting(&args, "--addr", "BANK_ADDR", "127.0.0.1:3000");
    let data = PathBuf::from(setting(&args, "--data", "BANK_DATA", "./eventfold-bank-data"));
    let store = Store::open(&data)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let closing = store.clone();
    axum::serve(listener, service::router(store.clone()))
        .with_graceful_shutdown(async move {
            // Without a signal handler, run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            // Closing the store ends every event stream, so open
            // connections finish and the server can stop.
            if let Err(e) = closing.close() {
                eprintln!("closing the store: {e}");
            }
        })
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bank_service: {e}");
            ExitCode::FAILURE
        }
    }
}
