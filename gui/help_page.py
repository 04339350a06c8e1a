"""Help > Reading this window: what each part of the window means and what to do for each
verdict. Offline: the page is text in this module, shown in a QTextBrowser that follows no
link out of it."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

TITLE = "Reading this window"

PAGE = """
<h2>Reading this window</h2>
<p>PortPressure watches the TCP sockets of this machine and answers one question: <b>will new
outbound connections soon fail because no local port is free?</b> Each outgoing connection needs a
local port from the <i>dynamic port range</i>. A connection this host closes first keeps its port in
<b>TIME_WAIT</b> for a while (60 s on Linux, 120 s by default on Windows). Open and close connections
fast enough and the range runs out: connect() then fails with EADDRNOTAVAIL on Linux, or
WSAENOBUFS 10055 / WSAEADDRINUSE 10048 and Tcpip events 4227/4231 on Windows.</p>

<h3>The parts of the window</h3>
<dl>
<dt><b>The verdict banner</b> (top)</dt>
<dd>OK, WARNING or CRITICAL, a title, and the reasons: sentences that name the pool, the process
and the remote endpoint, written to be pasted into a ticket. The banner grows to show every
reason.</dd>
<dt><b>The gauge</b> (left of the reasons)</dt>
<dd>Port pressure: the ports held in the busiest <i>pool</i> divided by the ports that pool can
use. A pool is what connect() draws from: on Linux one per local address and destination, on
Windows the whole range per local address. Under it: the busiest pool, when it runs out, and
how many sockets would sit in TIME_WAIT if connections kept being opened at the current rate.</dd>
<dt><b>The plot</b></dt>
<dd>Sockets per state over the last minute, 5 minutes, hour or day (buttons, Ctrl+1..4). The
dashed green line is the ports held in the busiest pool, the dark red dash-dotted line that pool's
capacity: when they meet, the pool is exhausted. TIME_WAIT is the wide red line. Click a legend
entry to hide or show its curve; a hidden curve is listed faded, "hidden: click to show". The line
under the plot gives the value of every curve at the newest sample (or where the mouse points).
New samples come in at the right; the view moves on in small steps (2% of the time shown) rather
than every second, and its height changes only when the counts leave it or fall well below.
Pause (Space) freezes the view; sampling goes on.</dd>
<dt><b>Top processes</b></dt>
<dd>Busiest first. Sockets = connections it holds plus the TIME_WAIT attributed to it. TIME_WAIT has
no owner in the kernel: <i>exact</i> means the connection was seen owned by the process (or a kernel
event named it), <i>inferred</i> means it was credited from the endpoints the process opens
connections to. A listening server shows "listening on N ports": listening ports never use the
dynamic range. Double-click a row, or select it and press Enter (View &gt; Process details), for
its path, user, command line and endpoints. Ctrl+F filters the table.</dd>
<dt><b>Remote endpoints</b></dt>
<dd>The destinations this host connects to, with their connections and TIME_WAIT.</dd>
<dt><b>Outbound test</b></dt>
<dd>Opens one real connection to a host and port you name and says how it failed, if it did:
"ports exhausted" is the proof that this machine is out of local ports for that destination.</dd>
<dt><b>OS settings</b></dt>
<dd>The settings that decide the limit (the port range, the TIME_WAIT length, tcp_tw_reuse on Linux),
their values in effect and their defaults; Apply changes one, after a backup, with Undo.</dd>
<dt><b>The status bar</b></dt>
<dd>The sampling interval and the cost of the last sample, whether every socket's owner is visible
(run as root or Administrator to see all), the port range. Long messages are shortened in the
middle: hover for the whole text, or View &gt; Messages (Ctrl+Shift+M) for every message of the
session.</dd>
</dl>

<h3>What to do</h3>
<dl>
<dt><b style="color:#1b5e20">OK</b></dt>
<dd>Local ports are plentiful. Nothing to do. If a problem was reported, record (File &gt; Record to
file) until it happens again, then open the recording to see the moment.</dd>
<dt><b style="color:#7a4f00">WARNING</b></dt>
<dd>Pressure is building (60% or more of the busiest pool), the current rate would fill the pool
with TIME_WAIT, or an application keeps connections in CLOSE_WAIT. Find the process named in the
reasons. For TIME_WAIT: make the application reuse connections (keep-alive, connection pooling);
then consider a wider port range, and on Linux tcp_tw_reuse = 1. For CLOSE_WAIT: the peer closed
and the application never did: a bug in that application; restarting it frees the sockets, and
its developers need the evidence. Save evidence (Ctrl+S) now, while the numbers show it.</dd>
<dt><b style="color:#9b1c1c">CRITICAL</b></dt>
<dd>The pool is (nearly) exhausted, about to run out within a minute, or an outbound test failed
for lack of a port: new connections are failing now. Save evidence (Ctrl+S) first. Run the Outbound
test to the destination in the reasons to prove it. Relief, fastest first: stop or slow down the
process named in the reasons; on Linux set tcp_tw_reuse to 1 (OS settings); widen the dynamic port
range; on Windows lower TcpTimedWaitDelay (needs a reboot). The lasting fix is in the application:
reuse connections instead of opening one per request.</dd>
</dl>

<h3>For the ticket</h3>
<p>File &gt; Save evidence (Ctrl+S) writes a folder named after the host and the time: window.png (this
window), plot.png, report.html (opens offline in any browser and prints on a few A4 pages),
report.json (the same data for tools) and history.csv (the recent series, one row per sample, the
time first). Attach the folder, or the screenshot and report.html.</p>
"""


class HelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"PortPressure: {TITLE}")
        self.resize(720, 640)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)  # offline: nothing to follow
        self.browser.setHtml(PAGE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)


class HelpAction(QAction):
    """Help > Reading this window (F1): one dialog, raised again when asked again."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(f"&{TITLE}", parent)
        self.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
        self.setStatusTip("What each part of the window means and what to do for each verdict")
        self.window = parent
        self.dialog: HelpDialog | None = None
        self.triggered.connect(self.show_page)

    def show_page(self) -> HelpDialog:
        if self.dialog is None:
            self.dialog = HelpDialog(self.window)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog
