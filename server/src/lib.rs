//! The docklab server library.
