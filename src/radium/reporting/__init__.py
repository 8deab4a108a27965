"""Where the time and money went: prices and cost (``pricing``), run budgets
(``budget``), the attempt timeline data (``timeline``) and ``rad report``'s
self-contained HTML page (``report_html``).

Nothing here is imported by ``rad --help``; the price database
(``genai-prices``) is imported only when a task's model needs a price.
"""
