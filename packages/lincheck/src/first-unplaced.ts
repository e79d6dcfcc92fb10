// Which items of a fixed sequence are placed, and the first that is not, in O(log n) per operation:
// a Fenwick tree of placed counts, searched by binary lifting. Pruners use it to follow, as the
// search places and takes back operations, the earliest write or read of some value still pending.

export class FirstUnplaced {
  private readonly tree: Int32Array;
  private readonly topStep: number;

  constructor(readonly size: number) {
    this.tree = new Int32Array(size + 1);
    let step = 1;
    while (step * 2 <= size) step *= 2;
    this.topStep = step;
  }

  place(position: number): void {
    this.add(position, 1);
  }

  unplace(position: number): void {
    this.add(position, -1);
  }

  /** The smallest position not placed; `size` when all are. */
  first(): number {
    // Largest prefix made only of placed items: descend while a whole block of the tree is placed.
    let covered = 0;
    for (let step = this.topStep; step > 0; step >>= 1) {
      const next = covered + step;
      if (next <= this.size && this.tree[next] === step) covered = next;
    }
    return covered;
  }

  private add(position: number, delta: number): void {
    for (let i = position + 1; i <= this.size; i += i & -i) this.tree[i] = this.tree[i]! + delta;
  }
}
