//! A whole round of secure aggregation in one process, for benchmarks and tests: the same steps
//! a network runs over the wire (`medfed_protocol::rounds`), every site in parallel.

use super::{Aggregator, Id, MaskedInput, Participant, SecAggError};

/// Runs a whole round in one process, every site in parallel: sites in `dropped` stop after
/// sharing keys. Returns the unmasked sum and the masked inputs the hub saw (for benchmarks and
/// tests; a network runs the same steps over the wire, `medfed_protocol::rounds`).
pub fn simulate_round(
    inputs: &[Vec<u64>],
    threshold: usize,
    dropped: &[Id],
) -> Result<(Vec<u64>, Vec<MaskedInput>), SecAggError> {
    use rayon::prelude::*;
    let n = inputs.len();
    let mut sites: Vec<Participant> = (1..=n)
        .map(|id| Participant::new(id as Id, n, threshold))
        .collect();
    let ads: Vec<_> = sites.iter().map(Participant::advertise).collect();
    let len = inputs.first().map_or(0, Vec::len);
    let mut hub = Aggregator::new(len, ads.clone(), threshold)?;
    let mail = sites
        .par_iter_mut()
        .map(|s| s.share_keys(&ads))
        .collect::<Result<Vec<_>, _>>()?;
    let inbox = hub.route(mail.into_iter().flatten().collect());
    let masked = sites
        .par_iter_mut()
        .zip(inputs)
        .filter(|(s, _)| !dropped.contains(&s.id()))
        .map(|(s, x)| {
            s.open(inbox[&s.id()].clone())?;
            s.masked_input(x)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for m in &masked {
        hub.add_masked(m.clone())?;
    }
    let request = hub.unmask_request();
    let answers = sites
        .iter()
        .filter(|s| !dropped.contains(&s.id()))
        .map(|s| s.unmask(&request))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((hub.finish(answers)?, masked))
}
