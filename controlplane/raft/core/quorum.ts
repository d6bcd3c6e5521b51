/** Majority quorum arithmetic over a set of voters. */

export type VoteResult = 'won' | 'lost' | 'pending';

export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** The largest index replicated on a majority of voters (0 with no voters). */
export function majorityCommittedIndex(voters: Iterable<string>, matchOf: (id: string) => number): number {
  const matches: number[] = [];
  for (const id of voters) matches.push(matchOf(id));
  if (matches.length === 0) return 0;
  matches.sort((a, b) => b - a);
  return matches[quorumSize(matches.length) - 1]!;
}

/** Outcome of a vote given the answers so far (missing voters may still answer). */
export function voteResult(voters: Iterable<string>, votes: ReadonlyMap<string, boolean>): VoteResult {
  let granted = 0;
  let missing = 0;
  let count = 0;
  for (const id of voters) {
    count++;
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  if (count === 0) return 'won';
  const q = quorumSize(count);
  if (granted >= q) return 'won';
  if (granted + missing >= q) return 'pending';
  return 'lost';
}
