//! One client connection: a reader that decodes and starts requests in order, and a writer that
//! sends their responses in the same order as each becomes ready.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::frame::{self, DecodeError, Request, encode_response};
use crate::{Shared, admin, configs, fetch, group_api, metadata, produce, versions};

/// A response being prepared: `Ok(None)` means "send nothing" (acks=0), `Err` closes the
/// connection.
pub(crate) type Reply = Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + Send>>;

pub(crate) fn ready(r: Result<Bytes, String>) -> Reply {
    Box::pin(std::future::ready(r.map(Some)))
}

/// Requests read ahead of their responses on one connection.
const MAX_IN_FLIGHT: usize = 256;

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("conn", %peer);
    async move {
        tracing::debug!("connected");
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
        let writer = tokio::spawn(write_loop(wr, rx).in_current_span());
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut rd, shared.cfg.max_request_bytes) => f,
                _ = shutdown.changed() => break,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection");
                    break;
                }
            };
            let reply = match frame::decode_request(frame) {
                Ok(req) => dispatch(&shared, req, peer),
                Err(DecodeError::UnsupportedVersion {
                    key: ApiKey::ApiVersions,
                    correlation_id,
                    version,
                    ..
                }) => {
                    // KIP-511: answer with v0 and the error, so the client can retry with a version we know.
                    tracing::debug!(version, "ApiVersions version too new; answering with v0");
                    ready(encode_response(
                        correlation_id,
                        0,
                        &versions::api_versions(crate::errors::c(
                            kafka_protocol::ResponseError::UnsupportedVersion,
                        )),
                    ))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection: cannot serve request");
                    break;
                }
            };
            if tx.send(reply).await.is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await
}

async fn read_frame<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    max: usize,
) -> std::io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request size {len} is outside 0..={max} (socket.request.max.bytes)"),
        ));
    }
    let mut buf = BytesMut::zeroed(len as usize);
    rd.read_exact(&mut buf).await?;
    Ok(Some(buf.freeze()))
}

async fn write_loop(wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(mut reply) = rx.recv().await {
        // If this reply must wait (an fsync, a long poll), first send what is already buffered:
        // earlier responses must not sit in the buffer behind a later one's wait.
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(reply.as_mut().poll(cx))).await;
        let outcome = match polled {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => {
                if w.flush().await.is_err() {
                    return;
                }
                reply.await
            }
        };
        match outcome {
            Ok(Some(bytes)) => {
                if let Err(e) = w.write_all(&bytes).await {
                    tracing::debug!(error = %e, "write failed");
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot encode response; closing connection");
                break;
            }
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.into_inner().shutdown().await;
}

fn dispatch(shared: &Arc<Shared>, req: Request, peer: SocketAddr) -> Reply {
    let corr = req.header.correlation_id;
    let v = req.header.request_api_version;
    tracing::trace!(api = ?req.key, version = v, correlation_id = corr, "request");
    match req.body {
        RequestKind::ApiVersions(_) => ready(encode_response(corr, v, &versions::api_versions(0))),
        RequestKind::Metadata(r) => ready(metadata::handle(shared, r, v, corr)),
        RequestKind::Produce(r) => produce::handle(shared, r, v, corr),
        RequestKind::Fetch(r) => fetch::handle(shared.clone(), r, v, corr),
        RequestKind::ListOffsets(r) => ready(fetch::list_offsets(shared, r, v, corr)),
        RequestKind::CreateTopics(r) => ready(admin::create_topics(shared, r, v, corr)),
        RequestKind::DeleteTopics(r) => ready(admin::delete_topics(shared, r, v, corr)),
        RequestKind::CreatePartitions(r) => ready(admin::create_partitions(shared, r, v, corr)),
        RequestKind::DescribeConfigs(r) => ready(configs::describe_configs(shared, r, v, corr)),
        RequestKind::DescribeCluster(r) => ready(admin::describe_cluster(shared, r, v, corr)),
        RequestKind::FindCoordinator(r) => group_api::find_coordinator(shared, r, v, corr),

        RequestKind::JoinGroup(r) => {
            let client = req
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();

            group_api::join_group(shared, r, v, corr, client, format!("/{}", peer.ip()))
        }

        RequestKind::SyncGroup(r) => group_api::sync_group(shared, r, v, corr),

        RequestKind::Heartbeat(r) => group_api::heartbeat(shared, r, v, corr),

        RequestKind::LeaveGroup(r) => group_api::leave_group(shared, r, v, corr),

        RequestKind::OffsetCommit(r) => group_api::offset_commit(shared, r, v, corr),

        RequestKind::OffsetFetch(r) => group_api::offset_fetch(shared, r, v, corr),

        RequestKind::DescribeGroups(r) => group_api::describe_groups(shared, r, v, corr),

        RequestKind::ListGroups(r) => group_api::list_groups(shared, r, v, corr),

        RequestKind::DeleteGroups(r) => group_api::delete_groups(shared, r, v, corr),

        RequestKind::OffsetDelete(r) => group_api::offset_delete(shared, r, v, corr),

        RequestKind::InitProducerId(r) => group_api::init_producer_id(shared, r, v, corr),

        RequestKind::AlterConfigs(r) => ready(configs::alter_configs(shared, r, v, corr)),

        RequestKind::IncrementalAlterConfigs(r) => {
            ready(configs::incremental_alter_configs(shared, r, v, corr))
        }

        RequestKind::DeleteRecords(r) => ready(admin::delete_records(shared, r, v, corr)),

        RequestKind::DescribeLogDirs(r) => ready(admin::describe_log_dirs(shared, r, v, corr)),

        _ => Box::pin(std::future::ready(Err(format!(
            "no handler for {:?}",
            req.key
        )))),
    }
}
