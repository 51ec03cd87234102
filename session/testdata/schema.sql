-- A small Kolibri-shaped app for the session tests: a facility's dataset,
-- its users, classrooms shared with everyone, learners' content logs and
-- admin notes only full-facility devices see.
CREATE TABLE facilitydataset (
	id TEXT PRIMARY KEY,
	description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE facilityuser (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	username TEXT NOT NULL,
	full_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE classroom (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	name TEXT NOT NULL
);
CREATE TABLE contentlog (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL,
	user_id TEXT NOT NULL REFERENCES facilityuser (id),
	content_id TEXT NOT NULL,
	progress REAL NOT NULL DEFAULT 0
);
CREATE TABLE adminnote (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL,
	body TEXT NOT NULL
);
