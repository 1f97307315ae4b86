"""The customer portal's HTML templates (Jinja2, autoescaped); kept in a module like the invoice's
(``templates.py``) so they ship in every bundle. The accent colour is a validated ``#rrggbb``;
chart SVG is the one value marked safe (made by matplotlib, which escapes its text)."""

_STYLE = """\
<style>
:root { --accent: {{ brand.accent }}; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2937;
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
header.top { background: var(--accent); color: #fff; padding: 14px 20px; }
header.top h1 { margin: 0; font-size: 20px; }
header.top p { margin: 2px 0 0; opacity: .9; font-size: 14px; }
main { max-width: 980px; margin: 0 auto; padding: 16px; display: grid; gap: 16px;
  grid-template-columns: 1fr 1fr; }
section { background: #fff; border-radius: 8px; padding: 16px 18px; box-shadow: 0 1px 3px rgba(0,0,0,.1);
  min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 10px; font-size: 16px; color: var(--accent); }
table { width: 100%; border-collapse: collapse; font-size: 14px; }
th, td { text-align: left; padding: 6px 4px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.total td { font-weight: 700; border-bottom: 0; }
.big { font-size: 26px; font-weight: 700; margin: 0; }
.muted { color: #6b7280; font-size: 13px; }
.meter { margin-bottom: 14px; }
.meter svg { width: 100%; height: auto; display: block; }
.ok { background: #ecfdf5; color: #065f46; padding: 8px 10px; border-radius: 6px; }
.err { background: #fef2f2; color: #991b1b; padding: 8px 10px; border-radius: 6px; }
form { display: grid; gap: 8px; max-width: 360px; }
label { font-size: 13px; color: #374151; }
input[type=text] { width: 100%; padding: 8px; font-size: 15px; border: 1px solid #d1d5db; border-radius: 6px; }
button { padding: 9px 14px; font-size: 15px; background: var(--accent); color: #fff; border: 0; border-radius: 6px; }
@media (max-width: 640px) {
  main { grid-template-columns: 1fr; padding: 10px; gap: 10px; }
  section { padding: 12px; }
  .big { font-size: 22px; }
}
</style>
"""


def _page(title: str, body: str) -> str:
    """A whole page: the shared head (inline style) around ``body``."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta name=\"robots\" content=\"noindex\">\n"
            f"<title>{title}</title>\n{_STYLE}</head>\n<body>\n{body}</body>\n</html>\n")


PORTAL_HTML = _page("Billing — {{ customer.name }}{% if brand.name %} — {{ brand.name }}{% endif %}", """\
<header class="top">
  <h1>{{ brand.name or "Billing" }}</h1>
  <p>{{ customer.name }} · current period {{ period }}</p>
</header>
<main>
{% if message %}<section class="wide"><div class="ok" role="status">{{ message }}</div></section>{% endif %}
{% if error %}<section class="wide"><div class="err" role="alert">{{ error }}</div></section>{% endif %}
<section id="running-bill">
  <h2>Running bill</h2>
  <p class="big" id="bill-total">{{ bill.total }}</p>
  <p class="muted">so far this period (as of {{ as_of }}), before prepaid credits</p>
  <table>
    <thead><tr><th>Item</th><th class="num">Quantity</th><th class="num">Amount</th></tr></thead>
    <tbody>
    {% for ln in bill.lines %}
      <tr><td>{{ ln.description }}</td><td class="num">{{ ln.quantity }}</td><td class="num">{{ ln.amount }}</td></tr>
    {% endfor %}
      <tr><td>Subtotal</td><td></td><td class="num">{{ bill.subtotal }}</td></tr>
      <tr><td>Tax</td><td></td><td class="num">{{ bill.tax }}</td></tr>
      <tr class="total"><td>Total</td><td></td><td class="num">{{ bill.total }}</td></tr>
    </tbody>
  </table>
</section>
<section id="credits">
  <h2>Prepaid credits</h2>
  <p class="big" id="credit-balance">{{ credits.balance }}</p>
  <p class="muted">left to draw</p>
  {% if credits.grants %}
  <table>
    <thead><tr><th>Grant</th><th class="num">Left</th><th>Expires</th></tr></thead>
    <tbody>
    {% for g in credits.grants %}
      <tr><td>{{ g.id }}</td><td class="num">{{ g.remaining }}</td><td>{{ g.expires or "never" }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
</section>
<section id="usage" class="wide">
  <h2>Usage this period</h2>
  {% for m in meters %}
  <div class="meter" id="meter-{{ m.code }}">
    <p><strong>{{ m.code }}</strong>: <span class="usage-total">{{ m.total }}</span> {{ m.unit }}</p>
    {{ m.chart }}
  </div>
  {% else %}
  <p class="muted">No usage recorded yet this period.</p>
  {% endfor %}
</section>
<section id="invoices">
  <h2>Invoices</h2>
  {% if invoices %}
  <table>
    <thead><tr><th>Number</th><th>Period</th><th class="num">Total</th><th>Files</th></tr></thead>
    <tbody>
    {% for inv in invoices %}
      <tr><td>{{ inv.number }}<br><span class="muted">{{ inv.status }}</span></td><td>{{ inv.period }}</td>
        <td class="num">{{ inv.total }}</td><td><a href="{{ inv.html }}">HTML</a> · <a href="{{ inv.pdf }}">PDF</a></td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p class="muted">No invoices yet.</p>
  {% endif %}
</section>
<section id="budget">
  <h2>Spend budget</h2>
  {% if budget %}
  <p>Budget per period: <strong id="budget-amount">{{ budget.amount }}</strong>; alerts at {{ budget.thresholds }} %.</p>
  {% if budget.alerts %}<p class="muted">Alerts sent this period: {{ budget.alerts | join(", ") }}</p>{% endif %}
  {% else %}
  <p class="muted">No budget set. Set one to be alerted as spend approaches it.</p>
  {% endif %}
  <form method="post" action="{{ form_action }}">
    <input type="hidden" name="form" value="{{ form_value }}">
    <label for="amount">Budget per period ({{ currency }})</label>
    <input type="text" id="amount" name="amount" inputmode="decimal" required value="{{ budget.raw_amount if budget else '' }}">
    <label for="thresholds">Alert at (% of budget, comma-separated)</label>
    <input type="text" id="thresholds" name="thresholds" value="{{ budget.thresholds if budget else '50, 80, 100' }}">
    <button type="submit">Save budget</button>
  </form>
</section>
</main>
""")

ERROR_HTML = _page("{{ title }}", """\
<header class="top"><h1>{{ brand.name or "Billing" }}</h1></header>
<main><section class="wide"><h2>{{ title }}</h2><p>{{ text }}</p></section></main>
""")
