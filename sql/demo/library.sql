-- Sample schema for `auditctl demo`: a small lending library with a
-- composite key, a quoted mixed-case table and Cyrillic data.

CREATE TABLE member (
    id          text PRIMARY KEY,
    full_name   text NOT NULL,
    email       text NOT NULL UNIQUE
);

CREATE TABLE "Book" (
    id          serial PRIMARY KEY,
    title       text NOT NULL,
    author      text NOT NULL,
    copies      integer NOT NULL DEFAULT 1 CHECK (copies >= 0)
);

CREATE TABLE loan (
    book_id     integer NOT NULL REFERENCES "Book" (id),
    member_id   text NOT NULL REFERENCES member (id),
    due_on      date NOT NULL,
    PRIMARY KEY (book_id, member_id)
);

INSERT INTO member (id, full_name, email) VALUES
    ('m-001', 'Анна Смирнова', 'anna@library.example'),
    ('m-002', 'David Okafor', 'david@library.example');

INSERT INTO "Book" (title, author, copies) VALUES
    ('Мастер и Маргарита', 'Михаил Булгаков', 2),
    ('The Left Hand of Darkness', 'Ursula K. Le Guin', 1);
