//! Async exports: functions whose call returns a [`Future`], polled on the worker's thread.
//!
//! An async export is a [`Function`] like any other (looked up by name, its types checked
//! exactly), which a worker does not call to the end: [`Function::call_async`] hands back the
//! function's future, its output type erased behind the task's own, and the worker polls it
//! among the other async tasks it holds (up to `concurrent_tasks_per_worker`). The future
//! need not be `Send`: it is made, polled and dropped on one worker thread. A panic, whether
//! in the call that makes the future or in any poll of it, becomes the task's
//! [`Error::Panicked`], and the future is dropped.
//!
//! A setup or teardown must be a plain function: an async one is refused with a message
//! that says so (there is no task, and so no executor turn, to poll it in).

use std::any::{type_name, Any};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{argument_mismatch, result_mismatch, Function, SerdeFunction};
use crate::codec::Serialization;
use crate::panics;
use crate::Error;

/// A future polled on the thread that made it.
pub(crate) type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A user's async function with its types, behind [`Function`] (and [`SerdeFunction`]).
pub(super) struct AsyncCallable<F, T, Fut> {
    function: F,
    types: PhantomData<fn(T) -> Fut>,
}

impl<F, T, Fut> AsyncCallable<F, T, Fut>
where
    F: Fn(T) -> Fut,
    Fut: Future + 'static,
{
    pub(super) fn new(function: F) -> Self {
        AsyncCallable {
            function,
            types: PhantomData,
        }
    }

    /// Makes the function's future; a panic in the call becomes the task's error.
    fn invoke(&self, arg: T) -> Result<Guarded<Fut>, Error> {
        let future = catch_unwind(AssertUnwindSafe(|| (self.function)(arg)))
            .map_err(|payload| panics::caught(&*payload, |message| message))?;
        Ok(Guarded {
            inner: Some(Box::pin(future)),
        })
    }

    /// What a setup or teardown that is async fails with.
    fn refused(name: &str) -> String {
        format!("\"{name}\" is an async export: a setup or teardown must be a plain function")
    }
}

impl<F, T, Fut> Function for AsyncCallable<F, T, Fut>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    T: Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    fn call(
        &self,
        name: &str,
        _arg: &mut dyn Any,
        _arg_type: &str,
        _out: &mut dyn Any,
        _out_type: &str,
    ) -> Result<(), Error> {
        // A worker starts an async export with `call_async`; only a teardown gets here.
        Err(Error::InvalidOptions(Self::refused(name)))
    }

    fn call_teardown(&self, name: &str) -> Result<(), Error> {
        Err(Error::InvalidOptions(Self::refused(name)))
    }

    fn arg_type(&self) -> &'static str {
        type_name::<T>()
    }

    fn is_async(&self) -> bool {
        true
    }

    fn call_async(
        &self,
        name: &str,
        arg: &mut dyn Any,
        arg_type: &str,
        out: &mut dyn Any,
        out_type: &str,
    ) -> Result<(), Error> {
        let Some(arg) = arg.downcast_mut::<Option<T>>() else {
            return Err(argument_mismatch::<T>(name, arg_type));
        };
        let Some(out) = out.downcast_mut::<Option<LocalFuture<Result<Fut::Output, Error>>>>()
        else {
            return Err(result_mismatch::<Fut::Output>(name, out_type));
        };
        // Not `ok_or`: an `Error` made and dropped on every task's path.
        let Some(arg) = arg.take() else {
            return Err(Error::Terminated);
        };
        *out = Some(Box::pin(self.invoke(arg)?));
        Ok(())
    }
}

impl<F, T, Fut> SerdeFunction for AsyncCallable<F, T, Fut>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Serialize + Send + 'static,
{
    fn call_encoded(
        &self,
        name: &str,
        _codec: Serialization,
        _arg: &[u8],
        _arg_type: &str,
        _out_type: &str,
    ) -> Result<Vec<u8>, Error> {
        // A child starts an async export with `call_encoded_async`; only a teardown gets here.
        Err(Error::InvalidOptions(Self::refused(name)))
    }

    fn call_encoded_async(
        &self,
        name: &str,
        codec: Serialization,
        arg: &[u8],
        arg_type: &str,
        out_type: &str,
    ) -> Result<LocalFuture<Result<Vec<u8>, Error>>, Error> {
        if arg_type != type_name::<T>() {
            return Err(argument_mismatch::<T>(name, arg_type));
        }
        if out_type != type_name::<Fut::Output>() {
            return Err(result_mismatch::<Fut::Output>(name, out_type));
        }
        let future = self.invoke(codec.decode(arg)?)?;
        Ok(Box::pin(async move { codec.encode(&future.await?) }))
    }

    fn call_setup(&self, name: &str) -> Result<(), String> {
        Err(Self::refused(name))
    }
}

/// The function's future, each poll's panic caught: the task's [`Error::Panicked`], and the
/// future dropped.
struct Guarded<Fut> {
    /// `None` once it finished.
    inner: Option<Pin<Box<Fut>>>,
}

impl<Fut: Future> Future for Guarded<Fut> {
    type Output = Result<Fut::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(Error::Terminated)); // Polled again after its end.
        };
        let result = match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(panics::caught(&*payload, |message| message)),
        };
        // A future whose drop panics (after a panic, say) must not take the worker with it.
        let inner = this.inner.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
        Poll::Ready(result)
    }
}

impl super::Exports {
    /// Exports the async `function` as `name`, replacing any function of that name: a call
    /// returns a future, which the worker polls on its own thread (it need not be `Send`)
    /// among the other async tasks it holds, up to
    /// [`concurrent_tasks_per_worker`](crate::Builder::concurrent_tasks_per_worker), as
    /// Tinypool's `concurrentTasksPerWorker` does in Node. Its tasks are interleaved at their
    /// await points; a sync export's task still has its worker to itself while it runs.
    ///
    /// Without features, a worker polls its futures with a small executor of its own: enough
    /// for futures that bring their own reactor (`async-io`'s timers, a channel fed by another
    /// thread, [`Port::recv_async`](crate::Port::recv_async)). With the `tokio` feature they
    /// run on a current-thread tokio runtime of the worker, with I/O and time enabled, so
    /// `tokio::time::sleep` and `tokio::net` work inside them.
    ///
    /// Aborting such a task ([`Task::abort`](crate::Task::abort), its signal, its timeout)
    /// drops its future at its next poll: its worker goes on with its other tasks.
    /// [`worker::aborted`](crate::worker::aborted) and [`worker::port`](crate::worker::port)
    /// are the task's own inside the future. An async export cannot be a setup or teardown.
    ///
    /// ```
    /// use tinypool::{Exports, Pool};
    ///
    /// let exports = Exports::new().export_async("add", |(a, b): (i32, i32)| async move { a + b });
    /// let pool = Pool::builder()
    ///     .exports(exports)
    ///     .concurrent_tasks_per_worker(10)
    ///     .build()?;
    /// let sum = pool.run_with::<i32, _>((4, 6), tinypool::RunOptions::new().name("add"));
    /// assert_eq!(sum.wait()?, 10);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn export_async<T, F, Fut>(mut self, name: &str, function: F) -> Self
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Serialize + Send + 'static,
    {
        self.insert_async_serde(name, function);
        self
    }

    /// Sets the async function that runs when a task names none (see
    /// [`export_async`](Self::export_async)).
    ///
    /// ```
    /// use tinypool::{Exports, Pool};
    ///
    /// let pool = Pool::builder()
    ///     .exports(Exports::new().export_default_async(|n: u64| async move { n * 2 }))
    ///     .build()?;
    /// assert_eq!(pool.run::<u64, _>(21u64).wait()?, 42);
    /// # Ok::<(), tinypool::Error>(())
    /// ```
    pub fn export_default_async<T, F, Fut>(self, function: F) -> Self
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Serialize + Send + 'static,
    {
        self.export_async(super::DEFAULT_NAME, function)
    }
}
