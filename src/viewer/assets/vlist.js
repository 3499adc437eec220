// A virtualized list: only the rows in view (and a few around them) exist in the page,
// so a 10,000-step run scrolls as smoothly as a 3-step one. Rows have one fixed height.

const OVERSCAN = 12;

export class VList {
  /**
   * @param {HTMLElement} box   the scrolling element (its height comes from the layout)
   * @param {number} rowHeight  pixels per row
   * @param {(i: number) => HTMLElement} render  builds row i
   */
  constructor(box, rowHeight, render) {
    this.box = box;
    this.rowHeight = rowHeight;
    this.render = render;
    this.count = 0;
    /** Called with the rows about to be drawn, before they are. */
    this.onRange = null;
    this.sizer = document.createElement('div');
    this.sizer.className = 'vsizer';
    this.layer = document.createElement('div');
    this.layer.className = 'vlayer';
    this.sizer.appendChild(this.layer);
    box.appendChild(this.sizer);
    this.pending = false;
    this.onScroll = () => this.schedule();
    box.addEventListener('scroll', this.onScroll, { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(box);
  }

  setCount(n) {
    this.count = n;
    this.sizer.style.height = n * this.rowHeight + 'px';
    this.draw();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  /** Draws the rows in view now (after a change of data or selection). */
  draw() {
    const top = this.box.scrollTop;
    const height = this.box.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    const last = Math.min(this.count, Math.ceil((top + height) / this.rowHeight) + OVERSCAN);
    if (this.onRange) this.onRange(first, last);
    this.layer.style.transform = `translateY(${first * this.rowHeight}px)`;
    const rows = [];
    for (let i = first; i < last; i++) rows.push(this.render(i));
    this.layer.replaceChildren(...rows);
  }

  /** Scrolls as little as needed for row i to be in view. */
  reveal(i) {
    const top = i * this.rowHeight;
    const bottom = top + this.rowHeight;
    const view = this.box.clientHeight;
    if (top < this.box.scrollTop) this.box.scrollTop = top;
    else if (bottom > this.box.scrollTop + view) this.box.scrollTop = bottom - view;
    this.draw();
  }

  /** Scrolls row i to about a third of the way down. */
  center(i) {
    this.box.scrollTop = Math.max(0, i * this.rowHeight - this.box.clientHeight / 3);
    this.draw();
  }

  destroy() {
    this.box.removeEventListener('scroll', this.onScroll);
    this.resize.disconnect();
  }
}
