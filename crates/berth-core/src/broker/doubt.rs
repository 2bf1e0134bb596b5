//! Which older copies a merged session still lacks, when a copy here in doubt about its QoS 2
//! state meets an imported state that is in doubt too (`Broker::merge_import`).

use crate::store::{CopyRef, Qos2Doubt};

/// The lack of a session merged from this copy (`local`, when in doubt) and an imported
/// state (`imported`, when in doubt). `lacking_this`: the imported state lacks exactly this
/// copy, which fills it; `is_this`: a copy reference names this copy. Only `lacking` and
/// `earlier` are set.
pub(super) fn merged_lack(
    local: Option<&Qos2Doubt>,
    imported: Option<&Qos2Doubt>,
    lacking_this: bool,
    is_this: impl Fn(&CopyRef) -> bool,
) -> Qos2Doubt {
    // The earlier lacks of both, less this copy (merged now): the merged state still lacks the
    // others' states.
    let mut earlier: Vec<CopyRef> = local.map(|d| d.earlier.clone()).unwrap_or_default();
    earlier.extend(
        imported
            .iter()
            .flat_map(|d| d.earlier.iter().copied())
            .filter(|copy| !is_this(copy)),
    );
    let lacking = match (local, imported) {
        (local, Some(_)) if lacking_this => local.and_then(|d| d.lacking),
        (local, None) => local.and_then(|d| d.lacking),
        (None, Some(imported)) => imported.lacking,
        (Some(local), Some(imported)) if local.lacking == imported.lacking => imported.lacking,
        (Some(local), Some(imported)) => match (local.lacking, imported.lacking) {
            // The later names what is missing. Two claims of one node: its copy stayed there
            // between them (a claim elsewhere that could not reach it fell back and left it),
            // so the later names the same copy, grown; forgotten, a merge with that copy would
            // drop its ids as stale (simulator seed 31). Two nodes: the later claim's copy came
            // after this one, and whoever claimed after this copy took its state, doubt
            // included, or lacked this very copy, so the later copy either settled the earlier
            // lack or names it (or a copy that does) when it comes back. Not named, no copy
            // could settle the doubt but by its wait running out (`--scenario lost-release`,
            // seeds 3213, 3344). The earlier one is still lacked until then
            // (`Qos2Doubt::earlier`): a merge with it ends what it completed (seed 904).
            (Some(a), Some(b)) => {
                let (later, before) = if a.epoch >= b.epoch { (a, b) } else { (b, a) };
                earlier.push(before);
                Some(later)
            }
            _ => None,
        },
    };
    let mut doubt = Qos2Doubt {
        lacking,
        ..Default::default()
    };
    doubt.add_earlier(earlier);
    doubt
}
