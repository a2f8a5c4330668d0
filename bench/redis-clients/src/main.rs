//! redis-rs vs fred on what the engine's link does (src/cluster/link.rs): the post script
//! (INCR, XADD, PUBLISH) in sequential pipelines of 256, and one call at a time (round trips).
//! How the engine's Redis client was chosen (docs/scaling.md). Not part of the build or the tests:
//!
//!     redis-server --port 16400 --save "" --appendonly no &
//!     cargo run --release --manifest-path bench/redis-clients/Cargo.toml -- redis://127.0.0.1:16400/0
use std::time::Instant;

const POST_LUA: &str = r#"
local id = redis.call('INCR', KEYS[1])
local msg = '{"id":' .. id .. ',' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'm', msg)
redis.call('PUBLISH', ARGV[2], msg)
return id
"#;
const N: usize = 100_000;
const BATCH: usize = 256;
const ONE_BY_ONE: usize = 10_000;
const PAYLOAD: &str = r#"{"from":4294967297,"name":"ann","bound":false,"ts":1796016908781,"text":"hello there, how is everyone doing today?","key":4294967300}"#;

async fn redis_rs(url: &str, tag: &str) -> (f64, f64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(POST_LUA).query_async(&mut conn).await.unwrap();
    let t = Instant::now();
    let mut done = 0;
    while done < N {
        let mut pipe = redis::pipe();
        for _ in 0..BATCH.min(N - done) {
            pipe.cmd("EVALSHA")
                .arg(&sha)
                .arg(2)
                .arg(format!("{tag}:seq"))
                .arg(format!("{tag}:hist"))
                .arg(PAYLOAD)
                .arg(format!("{tag}:ch"))
                .arg(100);
        }
        let ids: Vec<u64> = pipe.query_async(&mut conn).await.unwrap();
        done += ids.len();
    }
    let per_sec = N as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..ONE_BY_ONE {
        let _: u64 = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(2)
            .arg(format!("{tag}:seq"))
            .arg(format!("{tag}:hist"))
            .arg(PAYLOAD)
            .arg(format!("{tag}:ch"))
            .arg(100)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    (per_sec, t.elapsed().as_secs_f64() * 1e6 / ONE_BY_ONE as f64)
}

async fn fred(url: &str, tag: &str) -> (f64, f64) {
    use fred::prelude::*;
    let config = Config::from_url(url).unwrap();
    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    let sha: String = client.script_load(POST_LUA).await.unwrap();
    let keys = vec![format!("{tag}:seq"), format!("{tag}:hist")];
    let args: Vec<String> = vec![PAYLOAD.into(), format!("{tag}:ch"), "100".into()];
    let t = Instant::now();
    let mut done = 0;
    while done < N {
        let pipe = client.pipeline();
        let n = BATCH.min(N - done);
        for _ in 0..n {
            let a: Vec<String> = vec![
                sha.clone(),
                "2".into(),
                keys[0].clone(),
                keys[1].clone(),
                args[0].clone(),
                args[1].clone(),
                args[2].clone(),
            ];
            let _: () = pipe.custom(fred::cmd!("EVALSHA"), a).await.unwrap();
        }
        let ids: Vec<u64> = pipe.all().await.unwrap();
        done += ids.len();
    }
    let per_sec = N as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..ONE_BY_ONE {
        let _: u64 = client.evalsha(&sha, keys.clone(), args.clone()).await.unwrap();
    }
    let _ = client.quit().await;
    (per_sec, t.elapsed().as_secs_f64() * 1e6 / ONE_BY_ONE as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args().nth(1).unwrap_or("redis://127.0.0.1:6379/0".into());
    let (mut a, mut b, mut c, mut d) = (vec![], vec![], vec![], vec![]);
    for run in 0..3 {
        let (x, y) = redis_rs(&url, &format!("rr{run}")).await;
        a.push(x);
        b.push(y);
        let (x, y) = fred(&url, &format!("fr{run}")).await;
        c.push(x);
        d.push(y);
        println!(
            "run {run}: redis-rs {x:.0}/s {y:.1} us | fred {:.0}/s {:.1} us",
            c[run],
            d[run],
            x = a[run],
            y = b[run]
        );
    }
    println!("| client | post scripts/s, pipelines of {BATCH} (median of 3) | µs per call, one at a time (median of 3) |");
    println!(
        "| redis-rs 1.8 | {:.0} ({:.0} / {:.0} / {:.0}) | {:.1} |",
        median(a.clone()),
        a[0],
        a[1],
        a[2],
        median(b.clone())
    );
    println!(
        "| fred 10.1 | {:.0} ({:.0} / {:.0} / {:.0}) | {:.1} |",
        median(c.clone()),
        c[0],
        c[1],
        c[2],
        median(d.clone())
    );
}
