//! Course enrolment with Dynamic Consistency Boundaries: courses have a
//! capacity, students may take at most a few courses, and an enrolment must
//! respect both, however many enrol at once. No aggregate holds both
//! limits: each decision reads exactly the events it depends on (those
//! tagged with the course, and those tagged with the student) and appends
//! with a condition that fails if any of them changed since.
//!
//! ```text
//! cargo run --release --example enrolment [-- DIR]
//! ```
//!
//! Without DIR it runs in a temporary directory. Eight threads try to
//! enrol forty students in six courses at random; afterwards the example
//! replays the log and checks that no course is over its capacity and no
//! student over the limit, and exits non-zero if one is.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use eventfold::{
    AppendCondition, Error, ExpectedVersion, NewEvent, Query, QueryItem, ReadAll, ReadQuery, Store,
};
use serde::{Deserialize, Serialize};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Most courses one student may take.
pub const MAX_COURSES_PER_STUDENT: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CourseDefined {
    course: String,
    capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StudentEnrolled {
    course: String,
    student: String,
}

fn course_tag(course: &str) -> String {
    format!("course:{course}")
}

fn student_tag(student: &str) -> String {
    format!("student:{student}")
}

/// Why an enrolment was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The course does not exist.
    NoSuchCourse,
    /// The course is full.
    CourseFull,
    /// The student takes the most courses allowed.
    StudentAtLimit,
    /// The student is in the course already.
    AlreadyEnrolled,
}

/// What one enrolment came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Enrolled, after this many conflicting decisions were retried.
    Enrolled { retries: u32 },
    /// Refused, for this reason.
    Refused(Refused),
}

/// Defines a course with a capacity.
pub fn define_course(store: &Store, course: &str, capacity: usize) -> Result<(), BoxError> {
    let event = NewEvent::json("CourseDefined", &CourseDefined { course: course.into(), capacity })
        .with_tag(course_tag(course));
    store.append(&format!("course-{course}"), ExpectedVersion::NoStream, [event])?;
    Ok(())
}

/// The decision's boundary: the course's definition and enrolments, and the
/// student's enrolments.
fn boundary(course: &str, student: &str) -> Query {
    Query::new()
        .item(QueryItem::new().event_types(["CourseDefined", "StudentEnrolled"]).tag(course_tag(course)))
        .item(QueryItem::new().event_type("StudentEnrolled").tag(student_tag(student)))
}

/// Enrols `student` in `course` if both limits allow it. A conflicting
/// decision made meanwhile (the condition fails) is decided again on the
/// events as they are now.
pub fn enrol(store: &Store, course: &str, student: &str) -> Result<Outcome, BoxError> {
    let query = boundary(course, student);
    let mut retries = 0u32;
    loop {
        let seen = store.read_query(&query, ReadQuery::forward())?;
        let mut capacity = None;
        let (mut in_course, mut students_courses, mut already) = (0usize, 0usize, false);
        for e in &seen.events {
            if e.event_type == "CourseDefined" {
                capacity = Some(e.payload_as::<CourseDefined>()?.capacity);
                continue;
            }
            let enrolled: StudentEnrolled = e.payload_as()?;
            if enrolled.course == course {
                in_course += 1;
            }
            if enrolled.student == student {
                students_courses += 1;
                already |= enrolled.course == course;
            }
        }
        let refused = match capacity {
            None => Some(Refused::NoSuchCourse),
            Some(_) if already => Some(Refused::AlreadyEnrolled),
            Some(c) if in_course >= c => Some(Refused::CourseFull),
            Some(_) if students_courses >= MAX_COURSES_PER_STUDENT => Some(Refused::StudentAtLimit),
            Some(_) => None,
        };
        if let Some(why) = refused {
            return Ok(Outcome::Refused(why));
        }
        let event = NewEvent::json(
            "StudentEnrolled",
            &StudentEnrolled { course: course.into(), student: student.into() },
        )
        .with_tags([course_tag(course), student_tag(student)]);
        let condition = AppendCondition::new(query.clone(), Some(seen.head));
        match store.append_conditional(
            &format!("student-{student}"),
            ExpectedVersion::Any,
            [event],
            condition,
        ) {
            Ok(_) => return Ok(Outcome::Enrolled { retries }),
            Err(Error::AppendConditionFailed { .. }) => retries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a run found when it replayed the log.
#[derive(Debug, Default)]
pub struct Report {
    /// Enrolments stored.
    pub enrolled: usize,
    /// Enrolments refused.
    pub refused: usize,
    /// Decisions decided again after a conflict.
    pub retries: u64,
}

/// Runs `threads` threads, each trying `attempts` random enrolments, then
/// checks both limits against the whole log.
pub fn run(dir: &Path, threads: usize, attempts: usize) -> Result<Report, BoxError> {
    let store = Store::open(dir)?;
    let courses: Vec<(String, usize)> = (0..6).map(|i| (format!("c{i}"), 3 + i % 3)).collect();
    for (c, capacity) in &courses {
        define_course(&store, c, *capacity)?;
    }
    let students: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let outcomes: Vec<Result<Vec<Outcome>, BoxError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, courses, students) = (store.clone(), &courses, &students);
                scope.spawn(move || -> Result<Vec<Outcome>, BoxError> {
                    // A small generator of its own per thread: the mix of
                    // contended choices, not true randomness, is what matters.
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    let mut next = move |n: usize| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % n as u64) as usize
                    };
                    let mut out = Vec::with_capacity(attempts);
                    for _ in 0..attempts {
                        let course = &courses[next(courses.len())].0;
                        let student = &students[next(students.len())];
                        out.push(enrol(&store, course, student)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("an enrolling thread panicked".into())))
            .collect()
    });
    let mut report = Report::default();
    for outcome in outcomes {
        for o in outcome? {
            match o {
                Outcome::Enrolled { retries } => {
                    report.enrolled += 1;
                    report.retries += u64::from(retries);
                }
                Outcome::Refused(_) => report.refused += 1,
            }
        }
    }

    // Replay the whole log, not the queries: the check must not trust the
    // mechanism it checks.
    let (mut per_course, mut per_student) =
        (HashMap::<String, usize>::new(), HashMap::<String, usize>::new());
    let mut pairs = std::collections::HashSet::new();
    let reader = store.read()?;
    for e in reader.all(ReadAll::new())? {
        let e = e?;
        if e.event_type() == "StudentEnrolled" {
            let s: StudentEnrolled = e.payload_as()?;
            *per_course.entry(s.course.clone()).or_default() += 1;
            *per_student.entry(s.student.clone()).or_default() += 1;
            if !pairs.insert((s.course.clone(), s.student.clone())) {
                return Err(format!("{} is enrolled in {} twice", s.student, s.course).into());
            }
        }
    }
    for (c, capacity) in &courses {
        let n = per_course.get(c).copied().unwrap_or(0);
        println!("course {c}: {n} of {capacity} seats taken");
        if n > *capacity {
            return Err(format!("course {c} has {n} students, its capacity is {capacity}").into());
        }
    }
    if let Some((s, n)) = per_student.iter().find(|(_, n)| **n > MAX_COURSES_PER_STUDENT) {
        return Err(format!("student {s} takes {n} courses, the limit is {MAX_COURSES_PER_STUDENT}").into());
    }
    if report.enrolled != pairs.len() {
        return Err(format!("{} enrolments reported, {} stored", report.enrolled, pairs.len()).into());
    }
    println!(
        "{} enrolled, {} refused, {} decisions retried after a conflict; no course over capacity, no student over {} courses",
        report.enrolled, report.refused, report.retries, MAX_COURSES_PER_STUDENT
    );
    drop(reader);
    store.close()?;
    Ok(report)
}

fn main() -> ExitCode {
    let temp = tempfile::tempdir();
    let dir = match (std::env::args_os().nth(1), &temp) {
        (Some(a), _) => Path::new(&a).to_path_buf(),
        (None, Ok(t)) => t.path().to_path_buf(),
        (None, Err(e)) => {
            eprintln!("enrolment: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("enrolment example in {}", dir.display());
    match run(&dir, 8, 40) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enrolment: {e}");
            ExitCode::FAILURE
        }
    }
}
