"""Reports on the store: candidate tables (Table S1) and figures.

``tables`` renders :class:`anisoscreen.query.CandidateRow` lists as CSV, Markdown, LaTeX or
HTML; ``figures`` draws them with matplotlib (imported lazily, Agg backend); ``optics`` reads
the frequency-dependent dielectric function of a validation; ``periodic_table`` lays out
the element grid of the heat maps.
"""
