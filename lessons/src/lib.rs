//! Course content for docklab.
