// Dashboard previews of a round's kept candidates, decoded while their tensors are still on the worker
// (instead of rebuilding them from their recipes later). Which: the round's own candidates that it kept
// (what the dashboard shows for the round); the step runner holds their samples on the worker until
// the round's hook has decoded them (StepRunner.run), even those the algorithm's state let go of.
// A kept id carried over from an earlier round already has its preview, from that round.

export interface CandidatePreview {
  id: string;
  png: Buffer;
}
