"""The service's database (SQLite file or PostgreSQL): where it is, its schema versions, and how
each dialect connects and migrates. Shared by `cds.feedback` (cards, feedback) and `cds.auth`
(the replay seen-set) so that neither imports the other."""
