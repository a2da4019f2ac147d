//! The Redis side of the consumer: the consumer group, reading entries (this consumer's own
//! pending entries first, then new ones), taking over entries of dead consumers,
//! acknowledging, dead-lettering and trimming.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use fred::{
    clients::Client,
    interfaces::{ClientLike, HashesInterface, LuaInterface, StreamsInterface},
    types::{ClusterHash, CustomCommand, Value, config::Options, streams::XID},
};
use pipeline::{config::RedisArgs, entry::Fields};

use crate::{batch::RawEntry, config::GroupArgs, dead_letter};

/// How much longer than its block a blocking read may take to answer.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// How many entries one read may ask for so that its reply stays within about `bytes`: as
/// many entries of the largest size seen so far (`largest_entry`) as fit, every entry counted
/// as at least half the largest the gateway writes ([`LEAST_ENTRY_BYTES`]), at least one, at
/// most `count`; one while none has been seen. Redis builds a reply whole in its own memory
/// before sending it, which counts against its `maxmemory` (a full Redis refuses the
/// gateway's writes), and the client reads it whole into a buffer that doubles as it fills.
/// A count sized by small entries alone let the large entries that followed them make both
/// hundreds of MiB; as the gateway writes no entry above `pipeline::entry::MAX_BATCH_BYTES`,
/// a reply is now at most about twice `bytes`, or one entry, whatever came before it.
/// (Entries of an older gateway, or of another writer, are bounded only by what wrote them.)
pub fn entries_within(bytes: usize, largest_entry: usize, count: u64) -> u64 {
    if largest_entry == 0 {
        return 1;
    }
    ((bytes / largest_entry.max(LEAST_ENTRY_BYTES)) as u64).clamp(1, count.max(1))
}

/// The size [`entries_within`] takes an entry to have at the least: half the largest batch
/// field the gateway writes. Entries of requests of 2,000 events (274 KB) are larger, so
/// their reads are as before; streams of smaller entries are read in more, smaller replies
/// (32 entries in 8 MiB).
pub const LEAST_ENTRY_BYTES: usize = pipeline::entry::MAX_BATCH_BYTES / 2;

/// Reads and acknowledges one stream as one consumer of one group.
pub struct Source {
    /// Used only for blocking `XREADGROUP`: a blocked connection would delay every other
    /// command multiplexed on it.
    reader: Client,
    /// Acknowledgements and bookkeeping.
    client: Client,
    key: String,
    group: String,
    consumer: String,
    /// The hash `<stream>:<group>:attempts`: entry id → loads of it that began and never
    /// ended (see [`Source::begin_load`]). Per group, since each group loads on its own.
    attempts_key: String,
    /// True until this consumer's own pending entries (from before a crash) are re-read.
    recovering: bool,
    /// The id after which recovery continues: re-reading from `0` each time would return
    /// the same pending entries again and put them in the batch twice.
    recovered_to: String,
    /// Where the next `XAUTOCLAIM` continues its scan of the group's pending list.
    claim_cursor: String,
}

impl Source {
    /// Connects both clients for the stream (shard) `key` and creates the group if it does
    /// not exist.
    pub async fn connect(
        redis: &RedisArgs,
        group: &GroupArgs,
        key: &str,
    ) -> Result<Source, fred::error::Error> {
        let reader = redis.client()?;
        let client = redis.client()?;
        reader.init().await?;
        client.init().await?;
        let source = Source {
            reader,
            client,
            key: key.to_owned(),
            group: group.consumer_group.clone(),
            attempts_key: attempts_key(key, &group.consumer_group),
            consumer: group.consumer_name.clone(),
            recovering: true,
            recovered_to: "0".to_owned(),
            claim_cursor: "0-0".to_owned(),
        };
        source.ensure_group().await?;
        for other in group.retained_groups() {
            source.ensure_other_group(other).await?;
        }
        Ok(source)
    }

    /// `XGROUP CREATE key group 0 MKSTREAM`: a new group starts at the beginning of the
    /// stream, so nothing written before the first consumer started is skipped.
    pub async fn ensure_group(&self) -> Result<(), fred::error::Error> {
        self.ensure_other_group(&self.group).await
    }

    /// Creates `group` as [`Source::ensure_group`] does: a group named in
    /// `CONSUMER_RETAIN_GROUPS` then exists from the start, and [`Source::trim`], which
    /// keeps what every group still needs, keeps every entry for it (test
    /// `a_retained_group_keeps_entries_before_its_reader_starts`).
    async fn ensure_other_group(&self, group: &str) -> Result<(), fred::error::Error> {
        match self
            .client
            .xgroup_create::<Value, _, _, _>(&self.key, group, "0", true)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.details().starts_with("BUSYGROUP") => Ok(()),
            // A full Redis refuses XGROUP CREATE before looking whether the group exists:
            // a consumer restarting then must still start, to empty it.
            Err(e) if pipeline::retry::classify_redis(&e) == pipeline::retry::Class::Full => {
                match self.group_exists(group).await {
                    Ok(true) => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `group` exists on this source's stream.
    async fn group_exists(&self, group: &str) -> Result<bool, fred::error::Error> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .any(|info| info.get("name").cloned().and_then(string).as_deref() == Some(group)))
    }

    /// Every group of the stream, as `XINFO GROUPS` describes it.
    async fn groups(&self) -> Result<Vec<HashMap<String, Value>>, fred::error::Error> {
        let groups: Value = self
            .client
            .custom(
                self.command("XINFO"),
                vec![Value::from("GROUPS"), self.key.as_str().into()],
            )
            .await?;
        Ok(array(groups).into_iter().map(pairs).collect())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// A command on this stream, routed in a Redis Cluster to the node holding the stream's
    /// slot whatever its argument order (`XINFO GROUPS key` starts with a subcommand).
    fn command(&self, name: &'static str) -> CustomCommand {
        let slot = fred::util::redis_keyslot(self.key.as_bytes());
        CustomCommand::new_static(name, ClusterHash::Custom(slot), false)
    }

    /// Whether the last [`Source::claim`] stopped before the end of the pending list, so
    /// that claiming again at once may find more.
    pub fn claim_unfinished(&self) -> bool {
        self.claim_cursor != "0-0"
    }

    /// Reads up to `count` entries, blocking up to `block` for new ones. While recovering,
    /// it returns this consumer's pending entries (with their delivery counts) without
    /// blocking, each once, until there are none left.
    pub async fn read(
        &mut self,
        count: u64,
        block: Duration,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        if self.recovering {
            let from = self.recovered_to.clone();
            let mut entries = self.read_from(count, None, from).await?;
            if let Some(last) = entries.last() {
                self.recovered_to = last.id.clone();
                tracing::info!(entries = entries.len(), "re-reading own pending entries");
                self.fill_deliveries(&mut entries).await?;
                return Ok(entries);
            }
            self.recovering = false;
        }
        let block_ms = block.as_millis().clamp(1, 5_000) as u64;
        self.read_from(count, Some(block_ms), XID::NewInGroup).await
    }

    async fn read_from(
        &self,
        count: u64,
        block_ms: Option<u64>,
        id: impl Into<XID>,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        // A blocking read waits up to `block_ms` for its answer by design: its timeout is the
        // block plus the client's usual 5 s, or the client's own default (5 s) would end every
        // block of 5 s on an idle stream as a timeout error (the archiver blocks that long).
        let options = Options {
            timeout: block_ms.map(|ms| Duration::from_millis(ms) + READ_TIMEOUT_MARGIN),
            ..Options::default()
        };
        let reply: Value = self
            .reader
            .with_options(&options)
            .xreadgroup(
                &self.group,
                &self.consumer,
                Some(count),
                block_ms,
                false,
                &self.key,
                id.into(),
            )
            .await?;
        Ok(read_reply(reply))
    }

    /// Takes over up to `count` entries that other consumers of the group left pending for
    /// longer than `min_idle`: their consumer is presumed dead. Each call continues the
    /// scan of the pending list where the previous one stopped.
    ///
    /// Call it only when this consumer holds no unflushed entries: its own entries go idle
    /// too while a batch waits, and claiming them would put them in the batch twice.
    pub async fn claim(
        &mut self,
        count: u64,
        min_idle: Duration,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        // Until recovery is over, this consumer's pending list holds more than what it
        // claims, and the delivery counts below rely on it holding exactly that.
        if self.recovering {
            return Ok(Vec::new());
        }
        let reply: Value = self
            .client
            .custom(
                self.command("XAUTOCLAIM"),
                vec![
                    Value::from(self.key.as_str()),
                    self.group.as_str().into(),
                    self.consumer.as_str().into(),
                    (min_idle.as_millis() as i64).into(),
                    self.claim_cursor.as_str().into(),
                    "COUNT".into(),
                    (count as i64).into(),
                ],
            )
            .await?;
        let mut parts = array(reply).into_iter();
        self.claim_cursor = parts
            .next()
            .and_then(string)
            .unwrap_or_else(|| "0-0".to_owned());
        let mut entries: Vec<RawEntry> = parts
            .next()
            .map(array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(entry_from_array)
            .collect();
        if !entries.is_empty() {
            tracing::info!(
                entries = entries.len(),
                "took over entries of a dead consumer"
            );
            self.fill_deliveries(&mut entries).await?;
        }
        Ok(entries)
    }

    /// Sets each entry's delivery count from the group's pending list (`XPENDING` with a
    /// range and this consumer), for entries read again rather than for the first time.
    async fn fill_deliveries(&self, entries: &mut [RawEntry]) -> Result<(), fred::error::Error> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let reply: Value = self
            .client
            .custom(
                self.command("XPENDING"),
                vec![
                    Value::from(self.key.as_str()),
                    self.group.as_str().into(),
                    first.id.as_str().into(),
                    last.id.as_str().into(),
                    (entries.len() as i64).into(),
                    self.consumer.as_str().into(),
                ],
            )
            .await?;
        let counts: HashMap<String, u64> = array(reply)
            .into_iter()
            .filter_map(|row| {
                let mut row = array(row).into_iter();
                let id = row.next().and_then(string)?;
                let deliveries = row.nth(2)?.as_u64()?;
                Some((id, deliveries))
            })
            .collect();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let attempts: Vec<Option<u64>> = self.client.hmget(&self.attempts_key, ids).await?;
        for (entry, attempts) in entries.iter_mut().zip(attempts) {
            // Not in the list means acknowledged meanwhile; counting it once is harmless.
            entry.deliveries = counts.get(&entry.id).copied().unwrap_or(1).max(1);
            entry.attempts = attempts.unwrap_or(0);
        }
        Ok(())
    }

    /// Reads again from the stream, by id, the fields of each of `entries` that holds no
    /// batch: entries whose batch was let go once their rows were prepared
    /// (`Sink::prepare_entry`), when those rows did not load. They are pending in the group,
    /// so the trim keeps them (`TRIM_SCRIPT`). An entry gone from the stream meanwhile
    /// (deleted by hand) keeps no batch, and is dead-lettered as having none, as a pending
    /// entry deleted from the stream is when read ([`entry_from_array`]). Returns the indexes
    /// of the entries given back their fields.
    pub async fn reread(&self, entries: &mut [RawEntry]) -> Result<Vec<usize>, fred::error::Error> {
        let mut missing: Vec<(usize, &mut RawEntry)> = entries
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.fields.batch.is_none())
            .collect();
        let mut found_again = Vec::with_capacity(missing.len());
        for chunk in missing.chunks_mut(REREAD_CHUNK) {
            let pipeline = self.reader.pipeline();
            for (_, entry) in chunk.iter() {
                let id = entry.id.as_str();
                let _: () = pipeline.xrange(self.key.as_str(), id, id, Some(1)).await?;
            }
            let replies: Vec<Value> = pipeline.all().await?;
            for ((index, entry), reply) in chunk.iter_mut().zip(replies) {
                match array(reply).into_iter().find_map(entry_from_array) {
                    Some(found) if found.id == entry.id => {
                        entry.fields = found.fields;
                        found_again.push(*index);
                    }
                    _ => tracing::error!(
                        id = %entry.id,
                        "a pending entry is gone from the stream; it is dead-lettered without its batch"
                    ),
                }
            }
        }
        Ok(found_again)
    }

    /// Records that a load of `entries` begins: each one's count of interrupted loads goes
    /// up by one, and stays so if this consumer dies before the load ends. Written as
    /// absolute values, so a retried load of the same entries writes the same thing.
    pub async fn begin_load(&self, entries: &[RawEntry]) -> Result<(), fred::error::Error> {
        for chunk in entries.chunks(10_000) {
            let values: Vec<(&str, u64)> = chunk
                .iter()
                .map(|e| (e.id.as_str(), e.attempts + 1))
                .collect();
            let _: Value = self.client.hset(&self.attempts_key, values).await?;
        }
        Ok(())
    }

    /// Takes back [`Source::begin_load`] after a load failed without dying (ClickHouse
    /// down, say): the failure says nothing about the entries, so it does not count.
    pub async fn end_failed_load(&self, entries: &[RawEntry]) -> Result<(), fred::error::Error> {
        let (fresh, interrupted): (Vec<&RawEntry>, Vec<&RawEntry>) =
            entries.iter().partition(|e| e.attempts == 0);
        for chunk in fresh.chunks(10_000) {
            let ids: Vec<&str> = chunk.iter().map(|e| e.id.as_str()).collect();
            let _: Value = self.client.hdel(&self.attempts_key, ids).await?;
        }
        for chunk in interrupted.chunks(10_000) {
            let values: Vec<(&str, u64)> =
                chunk.iter().map(|e| (e.id.as_str(), e.attempts)).collect();
            let _: Value = self.client.hset(&self.attempts_key, values).await?;
        }
        Ok(())
    }

    /// Marks entries this consumer still holds as recently delivered, without counting a
    /// delivery (`XCLAIM … JUSTID` to itself), so that while a flush is retried no other
    /// consumer takes them over as idle.
    pub async fn keep_alive(&self, ids: &[String]) -> Result<(), fred::error::Error> {
        for chunk in ids.chunks(10_000) {
            let mut args: Vec<Value> = vec![
                self.key.as_str().into(),
                self.group.as_str().into(),
                self.consumer.as_str().into(),
                0.into(),
            ];
            args.extend(chunk.iter().map(|id| Value::from(id.as_str())));
            args.push("JUSTID".into());
            let _: Value = self.client.custom(self.command("XCLAIM"), args).await?;
        }
        Ok(())
    }

    /// Acknowledges entries after their rows are in ClickHouse (or they were
    /// dead-lettered).
    ///
    /// Their interrupted-load counts go first: the load ended, and a crash between the two
    /// commands leaves an entry that is loaded again from zero, which is what it is. The
    /// other order could leave counts of acknowledged entries behind for ever.
    pub async fn ack(&self, ids: &[&str]) -> Result<(), fred::error::Error> {
        for chunk in ids.chunks(10_000) {
            let _: Value = self.client.hdel(&self.attempts_key, chunk.to_vec()).await?;
            let _: u64 = self
                .client
                .xack(&self.key, &self.group, chunk.to_vec())
                .await?;
        }
        Ok(())
    }

    /// Copies entries that cannot be loaded to the dead-letter stream, with their reasons.
    pub async fn dead_letter(&self, dead: &[(&RawEntry, &str)]) -> Result<(), fred::error::Error> {
        let key = dead_letter::dead_key(&self.key);
        for (entry, reason) in dead {
            let _: String = self
                .client
                .xadd(&key, false, None, "*", dead_letter::fields(entry, reason))
                .await?;
        }
        Ok(())
    }

    /// Trims the stream below the lowest id some group still needs, and returns that id.
    ///
    /// A group needs its lowest pending entry (read, not yet acknowledged) or, with none
    /// pending, everything after its last delivered entry. `XTRIM MINID` keeps ids at or
    /// above the bound, so trimming to the minimum over all groups never removes an entry
    /// a group has not acknowledged. Never `MAXLEN`: a length says nothing about who still
    /// needs an entry.
    ///
    /// The bound is computed and applied in one script ([`TRIM_SCRIPT`]), so on one server
    /// and from that server's own group state. Across a Redis failover this is what keeps
    /// unloaded entries: a bound read from the old primary (where this consumer's reads and
    /// acknowledgements had landed) and applied on a promoted replica that lagged behind it
    /// would trim entries the new primary never delivered, or delivered to no one who loaded
    /// them (test `failover_round_trims_nothing_unloaded`).
    pub async fn trim(&self) -> Result<Option<String>, fred::error::Error> {
        let reply: Value = self
            .client
            .eval(
                TRIM_SCRIPT,
                vec![self.key.as_str()],
                vec![self.group.as_str()],
            )
            .await?;
        let mut parts = array(reply).into_iter();
        let bound = parts.next().and_then(string);
        let trimmed = parts.next().and_then(|v| v.as_i64()).unwrap_or(0);
        let lag = parts.next().and_then(|v| v.as_i64()).unwrap_or(-1);
        let pending = parts.next().and_then(|v| v.as_i64()).unwrap_or(0);
        // This group's backlog: entries not yet delivered plus those delivered but not
        // acknowledged (the consumer lag a dashboard shows); one series per stream (shard).
        if lag >= 0 {
            metrics::gauge!("consumer_group_backlog_entries", "stream" => self.key.clone())
                .set((lag + pending) as f64);
        }
        if trimmed > 0 {
            metrics::counter!("consumer_trimmed_entries_total").increment(trimmed as u64);
            tracing::debug!(trimmed, below = ?bound, "trimmed the stream");
        }
        Ok(bound)
    }
}

/// Entries per pipeline of [`Source::reread`]: each reply is one entry, at most
/// `pipeline::entry::MAX_BATCH_BYTES`, so a chunk's replies stay a few tens of MiB at most.
const REREAD_CHUNK: usize = 64;

/// [`Source::trim`] as one Lua script: `KEYS[1]` the stream, `ARGV[1]` this consumer's
/// group. Returns `{bound or false, entries trimmed, the group's lag (-1 if unknown), its
/// pending count}`. A group whose position cannot be read blocks trimming: better a longer
/// stream than a lost entry. Ids compare as (milliseconds, sequence) numbers; both fit a
/// Lua double exactly.
const TRIM_SCRIPT: &str = r#"
local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)%-(%d+)$')
  if not ms then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local needed, needed_id = nil, nil
local lag, pending = -1, 0
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    pending = info['pending']
    if info['lag'] then lag = info['lag'] end
  end
  local bound_id
  if info['pending'] > 0 then
    bound_id = redis.call('XPENDING', KEYS[1], info['name'])[2]
  else
    bound_id = info['last-delivered-id']
  end
  local bound = parse(bound_id)
  if not bound then return {false, 0, lag, pending} end
  if not needed or bound[1] < needed[1] or (bound[1] == needed[1] and bound[2] < needed[2]) then
    needed, needed_id = bound, bound_id
  end
end
if not needed then return {false, 0, lag, pending} end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', needed_id)
return {needed_id, trimmed, lag, pending}
"#;

/// The key of a group's interrupted-load counts. It contains the stream key whole, so a
/// hash tag in the stream key (`events:{0}`) puts both in the same cluster slot.
pub fn attempts_key(stream: &str, group: &str) -> String {
    format!("{stream}:{group}:attempts")
}

/// A stream id `ms-seq` as a pair that orders like the id.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The items of an array reply; none for nil (the client's `into_array` wraps nil instead).
fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        v => v.into_array(),
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        v => v.into_string(),
    }
}

fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::Bytes(b) => Some(b),
        Value::String(s) => Some(s.inner().clone()),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        _ => None,
    }
}

/// The fields of a reply given as a map (RESP3) or as a flat key-value array (RESP2).
fn pairs(v: Value) -> HashMap<String, Value> {
    match v {
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string()?, v)))
            .collect(),
        v => {
            let mut out = HashMap::new();
            let mut items = array(v).into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let Some(k) = string(k) {
                    out.insert(k, v);
                }
            }
            out
        }
    }
}

/// The entries of an `XREADGROUP` reply of one stream: nil when a blocking read timed out,
/// else `[[key, [entry, ...]]]` (a map from key to entries in RESP3).
///
/// Parsed by hand because the client's typed conversion fails on the nil of a timed-out
/// read and on the nil fields of a pending entry that was deleted from the stream.
fn read_reply(reply: Value) -> Vec<RawEntry> {
    let streams: Vec<Value> = match reply {
        Value::Null => return Vec::new(),
        Value::Map(map) => map.inner().into_values().collect(),
        v => array(v)
            .into_iter()
            .filter_map(|s| array(s).into_iter().nth(1))
            .collect(),
    };
    streams
        .into_iter()
        .flat_map(array)
        .filter_map(entry_from_array)
        .collect()
}

/// An entry of an `XREADGROUP` or `XAUTOCLAIM` reply: `[id, [field, value, ...]]`. A
/// pending entry deleted from the stream has nil fields: it comes back with none, so it
/// is dead-lettered as having no batch rather than left pending for ever.
fn entry_from_array(v: Value) -> Option<RawEntry> {
    let mut parts = array(v).into_iter();
    let id = parts.next().and_then(string)?;
    let mut fields = HashMap::new();
    let mut items = parts.next().map(array).unwrap_or_default().into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        if let Some(k) = string(k) {
            fields.insert(k, v);
        }
    }
    Some(raw_entry(id, fields))
}

fn raw_entry(id: String, fields: HashMap<String, Value>) -> RawEntry {
    RawEntry {
        id,
        fields: Fields::from_pairs(fields.into_iter().filter_map(|(k, v)| Some((k, bytes(v)?)))),
        deliveries: 1,
        attempts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_asks_for_the_entries_that_fit_its_bytes_at_least_one_at_most_count() {
        // nothing seen yet: one, of whatever size
        assert_eq!(entries_within(8 << 20, 0, 100), 1);
        assert_eq!(entries_within(8 << 20, 0, 0), 1);
        // small entries: as if each took half the largest entry the gateway writes, so that
        // large ones after them make at most twice the bytes
        assert_eq!(LEAST_ENTRY_BYTES, 256 * 1024);
        assert_eq!(entries_within(8 << 20, 1_000, 100), 32);
        assert_eq!(entries_within(8 << 20, 1_000, 10), 10);
        assert_eq!(entries_within(8 << 20, 1_000, 0), 1);
        let worst = entries_within(8 << 20, 200, 1_000) as usize * pipeline::entry::MAX_BATCH_BYTES;
        assert!(worst <= 2 * (8 << 20), "{worst}");
        // entries of 2,000 events (~274 KB): 30 in 8 MiB, not the 100 asked for
        assert_eq!(entries_within(8 << 20, 274_000, 100), 30);
        // entries of an older gateway's largest request (4 MiB): two, then one past the budget
        assert_eq!(entries_within(8 << 20, 4 << 20, 100), 2);
        assert_eq!(entries_within(8 << 20, 5 << 20, 100), 1);
    }

    #[test]
    fn ids_order_numerically() {
        assert!(parse_id("10-0") > parse_id("9-5"));
        assert!(parse_id("9-10") > parse_id("9-9"));
        assert_eq!(parse_id("0-0"), Some((0, 0)));
        assert_eq!(parse_id("x"), None);
    }

    #[test]
    fn read_replies_parse_including_nils() {
        assert!(read_reply(Value::Null).is_empty(), "a timed-out read");
        let entry = |id: &str, fields: Value| Value::Array(vec![id.into(), fields]);
        let written = Fields {
            batch: Some(Bytes::from_static(b"x")),
            traceparent: Some(Bytes::from_static(b"t")),
            ..Fields::default()
        };
        let flat = written
            .pairs()
            .into_iter()
            .flat_map(|(name, value)| [Value::from(name), Value::Bytes(value)])
            .collect();
        let reply = Value::Array(vec![Value::Array(vec![
            "events".into(),
            Value::Array(vec![
                entry("1-0", Value::Array(flat)),
                entry("2-0", Value::Null),
            ]),
        ])]);
        let entries = read_reply(reply);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fields, written);
        assert_eq!(
            (entries[1].id.as_str(), entries[1].fields.batch.is_none()),
            ("2-0", true)
        );
    }

    #[test]
    fn flat_replies_become_fields() {
        let v = Value::Array(vec!["name".into(), "g".into(), "pending".into(), 3.into()]);
        let p = pairs(v);
        assert_eq!(p.get("pending").and_then(Value::as_u64), Some(3));
        assert_eq!(
            p.get("name").cloned().and_then(string).as_deref(),
            Some("g")
        );
    }
}
