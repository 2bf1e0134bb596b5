//! A session's QoS 2 doubt in its stored record (`DOUBT` in the layout, session flags bits 5
//! and 6).

use berth_codec::PacketId;
use berth_core::{CopyRef, Epoch, NodeId, Qos2Doubt, StoreError};
use bytes::{BufMut, BytesMut};

use super::Reader;

/// `lacking_node:u64 lacking_epoch:u64 count:u16 released:u16*count`, then, when there are
/// earlier lacks (flag bit 6), `count:u8 (node:u64 epoch:u64)*count`.
pub(super) fn put(out: &mut BytesMut, doubt: &Qos2Doubt) {
    let (node, epoch) = doubt
        .lacking
        .map_or((0, 0), |copy| (copy.node.0, copy.epoch.0));
    out.put_u64(node);
    out.put_u64(epoch);
    // At most 65,535 distinct packet ids.
    out.put_u16(doubt.released.len() as u16);
    for id in &doubt.released {
        out.put_u16(id.get());
    }
    if !doubt.earlier.is_empty() {
        // At most `Qos2Doubt::EARLIER_KEPT`.
        out.put_u8(doubt.earlier.len() as u8);
        for copy in &doubt.earlier {
            out.put_u64(copy.node.0);
            out.put_u64(copy.epoch.0);
        }
    }
}

/// What [`put`] wrote; `with_earlier`: flag bit 6 is set.
pub(super) fn read(r: &mut Reader<'_>, with_earlier: bool) -> Result<Qos2Doubt, StoreError> {
    let node = r.u64("lacking copy node")?;
    let lacking_epoch = r.u64("lacking copy epoch")?;
    let count = r.u16("released packet id count")?;
    let mut released = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let id = r.u16("released packet id")?;
        released.push(PacketId::new(id).ok_or_else(|| r.corrupt("released packet id 0"))?);
    }
    let mut earlier = Vec::new();
    if with_earlier {
        for _ in 0..r.u8("earlier lacked copy count")? {
            earlier.push(CopyRef {
                node: NodeId(r.u64("earlier lacked copy node")?),
                epoch: Epoch(r.u64("earlier lacked copy epoch")?),
            });
        }
    }
    Ok(Qos2Doubt {
        lacking: (node != 0).then_some(CopyRef {
            node: NodeId(node),
            epoch: Epoch(lacking_epoch),
        }),
        earlier,
        released,
    })
}
