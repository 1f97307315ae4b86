"""The invoice and credit note HTML template (Jinja2, autoescaped). Kept in a module, not a data file, so it
ships inside every wheel and Lambda bundle without package-data configuration.

Context: ``inv`` (:class:`~meterbill.rendering.view.InvoiceView`), ``brand``
(:class:`~meterbill.rendering.branding.Branding`) and ``logo_src`` (already escaped, or None).
Every value is escaped; the accent colour is a validated ``#rrggbb``.
"""

INVOICE_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ inv.title }}{% if brand.name %} — {{ brand.name }}{% endif %}</title>
<style>
:root { --accent: {{ brand.accent }}; }
@page { size: A4; margin: 16mm; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: #1f2937;
  font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.sheet { max-width: 820px; margin: 24px auto; background: #fff; padding: 40px 48px;
  border-top: 6px solid var(--accent); box-shadow: 0 1px 3px rgba(0,0,0,.12); }
header { display: flex; justify-content: space-between; gap: 24px; align-items: flex-start; }
.seller img { max-height: 56px; max-width: 220px; display: block; margin-bottom: 8px; }
.seller .name { font-weight: 700; font-size: 16px; }
.seller .addr, .muted { color: #6b7280; }
.title { text-align: right; }
.title h1 { margin: 0; font-size: 28px; color: var(--accent); letter-spacing: .5px; }
.title .number { font-size: 16px; font-weight: 600; margin: 2px 0 6px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 12px;
  font-weight: 700; text-transform: uppercase; letter-spacing: .6px; border: 1px solid; }
.badge.draft { color: #92400e; background: #fef3c7; border-color: #f59e0b; }
.badge.final { color: #1e40af; background: #dbeafe; border-color: #3b82f6; }
.badge.paid { color: #166534; background: #dcfce7; border-color: #22c55e; }
.badge.finalizing, .badge.void, .badge.uncollectible, .badge.issued, .badge.other { color: #374151; background: #e5e7eb; border-color: #9ca3af; }
hr.rule { border: 0; border-top: 2px solid var(--accent); margin: 20px 0; }
.notice { padding: 8px 12px; border-left: 4px solid var(--accent); background: #f9fafb; margin: 0 0 16px; }
.parties { display: flex; justify-content: space-between; gap: 24px; }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .8px; color: var(--accent); margin: 0 0 6px; }
dl.facts { display: grid; grid-template-columns: auto auto; gap: 2px 16px; margin: 0; }
dl.facts dt { color: #6b7280; } dl.facts dd { margin: 0; text-align: right; font-weight: 500; }
table.lines { width: 100%; border-collapse: collapse; margin-top: 24px; }
table.lines th { text-align: left; font-size: 12px; text-transform: uppercase; letter-spacing: .6px;
  color: var(--accent); border-bottom: 2px solid var(--accent); padding: 6px 8px; }
table.lines td { padding: 8px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
table.lines .num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.lines tr.has-subs td { border-bottom: 0; padding-bottom: 4px; }
table.lines tr.sub td { border-bottom: 0; padding: 0 8px 2px 24px; color: #6b7280; font-size: 12.5px; }
table.lines tr.sub.last td { border-bottom: 1px solid #e5e7eb; padding-bottom: 8px; }
table.totals { margin: 16px 0 0 auto; border-collapse: collapse; min-width: 300px; }
table.totals td { padding: 4px 8px; } table.totals td.num { text-align: right; white-space: nowrap; }
table.totals tr.total td { border-top: 2px solid var(--accent); font-weight: 700; font-size: 16px; padding-top: 8px; }
table.totals tr.due td { border-top: 1px solid #e5e7eb; font-weight: 700; font-size: 16px; color: var(--accent); }
section.payment { margin-top: 28px; }
.bank { white-space: pre-line; }
.card a { color: var(--accent); font-weight: 600; word-break: break-all; }
footer { margin-top: 32px; padding-top: 12px; border-top: 1px solid #e5e7eb; color: #6b7280; font-size: 12px; }
@media print { body { background: #fff; } .sheet { box-shadow: none; margin: 0; max-width: none; padding: 0; } }
</style>
</head>
<body>
<main class="sheet">
<header>
  <div class="seller">
{% if logo_src %}    <img src="{{ logo_src }}" alt="{{ brand.name or 'Logo' }}">
{% endif %}
{% if brand.name %}    <div class="name">{{ brand.name }}</div>
{% endif %}
{% for line in brand.address_lines %}    <div class="addr">{{ line }}</div>
{% endfor %}
  </div>
  <div class="title">
    <h1>{{ inv.heading }}</h1>
    <div class="number">{{ inv.number or ("Number pending" if inv.status == "finalizing" else "Draft") }}</div>
    <span class="badge {{ inv.status }}">{{ inv.status_label }}</span>
  </div>
</header>
<hr class="rule">
{% if inv.notice %}<p class="notice">{{ inv.notice }}</p>
{% endif %}
<div class="parties">
  <section class="billto">
    <h2>{{ inv.party_label }}</h2>
    <div class="name"><strong>{{ inv.customer_name }}</strong></div>
{% if inv.customer_email %}    <div>{{ inv.customer_email }}</div>
{% endif %}
{% for line in inv.customer_lines %}    <div>{{ line }}</div>
{% endfor %}
  </section>
  <section class="details">
    <dl class="facts">
{% for f in inv.facts %}      <dt>{{ f.label }}</dt><dd>{% if f.strong %}<strong>{{ f.value }}</strong>{% else %}{{ f.value }}{% endif %}</dd>
{% endfor %}
    </dl>
  </section>
</div>
<table class="lines">
  <thead><tr><th>Description</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Amount ({{ inv.currency }})</th></tr></thead>
  <tbody>
{% for line in inv.lines %}
{% set subs = line.tiers|length + line.notes|length %}
    <tr class="line{% if subs %} has-subs{% endif %}"><td>{{ line.description }}</td><td class="num">{{ line.quantity }}</td><td class="num">{{ line.unit_price }}</td><td class="num">{{ line.amount }}</td></tr>
{% for t in line.tiers %}
    <tr class="sub tier{% if loop.index == subs %} last{% endif %}"><td colspan="3">{{ t.expression }}</td><td class="num">{{ t.amount }}</td></tr>
{% endfor %}
{% for note in line.notes %}
    <tr class="sub note{% if loop.index + line.tiers|length == subs %} last{% endif %}"><td colspan="4">{{ note }}</td></tr>
{% endfor %}
{% endfor %}
  </tbody>
</table>
<table class="totals">
{% for row in inv.before_total %}  <tr class="{{ row.kind }}"><td>{{ row.label }}</td><td class="num">{{ row.amount }}</td></tr>
{% endfor %}
  <tr class="total"><td>Total</td><td class="num">{{ inv.currency }} {{ inv.total }}</td></tr>
{% for row in inv.after_total %}  <tr class="{{ row.kind }}"><td>{{ row.label }}</td><td class="num">{{ row.amount }}</td></tr>
{% endfor %}
{% if inv.amount_due is not none %}  <tr class="due"><td>Amount due</td><td class="num">{{ inv.currency }} {{ inv.amount_due }}</td></tr>
{% endif %}
</table>
{% for note in inv.notes %}<p class="muted">{{ note }}</p>
{% endfor %}
{% if inv.payable and (brand.bank_lines or inv.payment_url) %}
<section class="payment">
  <h2>Payment</h2>
  <p>Please pay {{ inv.currency }} {{ inv.amount_due or inv.total }} by {{ inv.due }}{% if inv.number %}, quoting <strong>{{ inv.number }}</strong> as the reference{% endif %}.</p>
{% if brand.bank_lines %}  <div class="bank">{{ brand.bank_lines|join("\\n") }}</div>
{% endif %}
{% if inv.payment_url %}  <p class="card">Pay by card: <a href="{{ inv.payment_url }}">{{ inv.payment_url }}</a></p>
{% endif %}
</section>
{% endif %}
<footer>
{% for line in brand.footer_lines %}  <div>{{ line }}</div>
{% endfor %}
{% if brand.support_email %}  <div>Questions about this {{ inv.heading|lower }}? <a href="mailto:{{ brand.support_email }}">{{ brand.support_email }}</a></div>
{% endif %}
  <div>{{ inv.heading }} id {{ inv.id }}</div>
</footer>
</main>
</body>
</html>
"""
