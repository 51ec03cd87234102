-- The sample school app: a facility's dataset, its users, classrooms,
-- memberships, lessons and their assignments, learners' content logs,
-- anonymous usage logs and coaches' notes. Every id is 32 lower-case hex
-- digits; the dataset id is the id of the facility's root certificate.
-- Which rows sync, and who may read them, is in profile.json.
CREATE TABLE facilitydataset (
	id TEXT PRIMARY KEY,
	description TEXT NOT NULL DEFAULT '',
	location TEXT NOT NULL DEFAULT ''
);
CREATE TABLE facility (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	name TEXT NOT NULL,
	modified TEXT NOT NULL
);
CREATE TABLE facilityuser (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	facility_id TEXT NOT NULL REFERENCES facility (id),
	username TEXT NOT NULL,
	full_name TEXT NOT NULL DEFAULT '',
	role TEXT NOT NULL DEFAULT 'learner',
	modified TEXT NOT NULL,
	ui_theme TEXT -- a preference of this device, never synced
);
CREATE TABLE classroom (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	facility_id TEXT NOT NULL REFERENCES facility (id),
	name TEXT NOT NULL,
	modified TEXT NOT NULL
);
CREATE TABLE membership (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	user_id TEXT NOT NULL REFERENCES facilityuser (id),
	classroom_id TEXT NOT NULL REFERENCES classroom (id)
);
CREATE TABLE lesson (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	classroom_id TEXT NOT NULL REFERENCES classroom (id),
	title TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	is_active INTEGER NOT NULL DEFAULT 0,
	modified TEXT NOT NULL
);
CREATE TABLE lessonassignment (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	lesson_id TEXT NOT NULL REFERENCES lesson (id),
	classroom_id TEXT NOT NULL REFERENCES classroom (id),
	assigned_at TEXT NOT NULL
);
CREATE TABLE contentsummarylog (
	id TEXT PRIMARY KEY, -- computed: see "morango id"
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	user_id TEXT NOT NULL REFERENCES facilityuser (id),
	content_id TEXT NOT NULL,
	progress REAL NOT NULL DEFAULT 0,
	time_spent REAL NOT NULL DEFAULT 0,
	completed INTEGER NOT NULL DEFAULT 0,
	modified TEXT NOT NULL
);
CREATE TABLE contentsessionlog (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	user_id TEXT NOT NULL REFERENCES facilityuser (id),
	content_id TEXT NOT NULL,
	start_time TEXT NOT NULL,
	end_time TEXT NOT NULL,
	progress REAL NOT NULL DEFAULT 0
);
CREATE TABLE anonymoussessionlog (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	content_id TEXT NOT NULL,
	start_time TEXT NOT NULL,
	end_time TEXT NOT NULL
);
CREATE TABLE coachnote (
	id TEXT PRIMARY KEY,
	dataset_id TEXT NOT NULL REFERENCES facilitydataset (id),
	user_id TEXT NOT NULL REFERENCES facilityuser (id),
	author_id TEXT NOT NULL REFERENCES facilityuser (id),
	body TEXT NOT NULL,
	modified TEXT NOT NULL
);
