"""CMS electronic clinical quality measures (eCQMs) evaluated in Python, faithful to their CQL.

`engine.evaluate(record, period)` gives each measure's populations for one patient; the
`care-gaps` service turns open gaps into cards. Measure parameters are data in
cds/knowledge/measures/; the expanded value sets ship in cds/knowledge/valuesets/.
"""
