//! A burn-train training strategy for data parallelism that runs on every backend with
//! several devices, Wgpu included: [`HostDataParallel`].
//!
//! burn-train's own strategies cannot run on Wgpu in Burn 0.21: `MultiDevice` forks the
//! model onto each device with `to_device`, which panics between two Wgpu devices, and its
//! worker threads read tensors another thread wrote (CubeCL gives each thread its own
//! stream, so such a read can see the old values); DDP needs collectives Wgpu lacks. This
//! strategy keeps every tensor operation on the thread that runs `fit` and moves tensors
//! through the host ([`super::replicate`], [`super::all_reduce`]):
//!
//! 1. each device takes the next batch of its share of the training set (burn-train's
//!    `split_dataloader`, as `MultiDevice` does: contiguous shares, one loader per device);
//! 2. the model's parameters are copied to every other device, and every replica runs the
//!    model's `TrainStep` (forward and backward, under the prepared model's precision);
//! 3. the gradients are reduced onto the first device (the mean by default: the gradient
//!    of the mean loss over the global batch), optionally moving in half precision;
//! 4. the learner steps once on the first device: one optimizer, one loss-scaler report
//!    per iteration, as under `MultiDevice`.
//!
//! Devices run one after another from one thread; on a GPU the kernels still overlap
//! (launches are asynchronous until the host copy of step 3 waits for each device).

use burn::data::dataloader::Progress;
use burn::data::dataloader::split::split_dataloader;
use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsAccumulator;
use burn::tensor::Device;
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent, LearningComponentsTypes, SupervisedLearningStrategy,
    SupervisedTrainingEventProcessor, TrainLoader, TrainStep, TrainingBackend, TrainingComponents, TrainingItem, TrainingModel,
    ValidLoader,
};

use super::all_reduce::{CommDtype, ReduceOp, reduce_to_first};
use super::replicate;

/// burn-train's `SupervisedLearningStrategy` for data parallelism through the host (see the
/// module documentation). Built by [`DataParallel::host_staged`](super::DataParallel::host_staged),
/// which checks the device list and configures the loss scaler.
pub struct HostDataParallel<LC: LearningComponentsTypes> {
    devices: Vec<Device<TrainingBackend<LC>>>,
    op: ReduceOp,
    comm: CommDtype,
}

impl<LC: LearningComponentsTypes> HostDataParallel<LC> {
    /// `devices` must be a checked list ([`DataParallel::new`](super::DataParallel::new)).
    pub(crate) fn new(devices: Vec<Device<TrainingBackend<LC>>>, op: ReduceOp, comm: CommDtype) -> Self {
        Self { devices, op, comm }
    }

    /// One epoch over every device's share of the training set; stops when any share runs
    /// out (the shares differ by at most one batch).
    fn train_epoch(
        &self,
        learner: &mut Learner<LC>,
        loaders: &[TrainLoader<LC>],
        epoch: &Progress,
        accumulation: usize,
        events: &mut SupervisedTrainingEventProcessor<LC>,
        interrupter: &Interrupter,
    ) {
        let mut iterators: Vec<_> = loaders.iter().map(|loader| loader.iter()).collect();
        let mut accumulator = GradientsAccumulator::new();
        let (mut pending, mut iteration) = (0, 0);
        'epoch: loop {
            let mut batches = Vec::with_capacity(iterators.len());
            for iterator in iterators.iter_mut() {
                match iterator.next() {
                    Some(batch) => batches.push(batch),
                    None => break 'epoch,
                }
            }
            let progress = iterators.iter().fold(Progress::new(0, 0), |sum, it| {
                let p = it.progress();
                Progress::new(sum.items_processed + p.items_processed, sum.items_total + p.items_total)
            });
            learner.lr_step();
            let model = learner.model();
            let (grads, items): (Vec<_>, Vec<_>) = batches
                .into_iter()
                .zip(&self.devices)
                .enumerate()
                .map(|(i, (batch, device))| {
                    let output = if i == 0 { model.step(batch) } else { replicate(model.clone(), device).step(batch) };
                    (output.grads, output.item)
                })
                .unzip();
            let (grads, _) = reduce_to_first(&model, grads, &self.devices, self.op, self.comm);
            accumulator.accumulate(&model, grads);
            pending += 1;
            if pending >= accumulation {
                learner.optimizer_step(accumulator.grads());
                pending = 0;
            }
            for item in items {
                iteration += 1;
                let item = TrainingItem::new(item, progress.clone(), epoch.clone(), Some(iteration), Some(learner.lr_current()));
                events.process_train(LearnerEvent::ProcessedItem(item));
            }
            if interrupter.should_stop() {
                break;
            }
        }
        events.process_train(LearnerEvent::EndEpoch(epoch.items_processed));
    }

    /// Validation on the first device, as burn-train's strategies run it.
    fn valid_epoch(
        learner: &Learner<LC>,
        loader: &ValidLoader<LC>,
        epoch: &Progress,
        events: &mut SupervisedTrainingEventProcessor<LC>,
        interrupter: &Interrupter,
    ) {
        let model = learner.model().valid();
        let mut iterator = loader.iter();
        let mut iteration = 0;
        while let Some(batch) = iterator.next() {
            iteration += 1;
            let item = TrainingItem::new(model.step(batch), iterator.progress(), epoch.clone(), Some(iteration), None);
            events.process_valid(LearnerEvent::ProcessedItem(item));
            if interrupter.should_stop() {
                break;
            }
        }
        events.process_valid(LearnerEvent::EndEpoch(epoch.items_processed));
    }
}

impl<LC: LearningComponentsTypes> SupervisedLearningStrategy<LC> for HostDataParallel<LC> {
    fn fit(
        &self,
        components: TrainingComponents<LC>,
        learner: Learner<LC>,
        train: TrainLoader<LC>,
        valid: ValidLoader<LC>,
        starting_epoch: usize,
    ) -> (TrainingModel<LC>, SupervisedTrainingEventProcessor<LC>) {
        let main = &self.devices[0];
        // Moving the model would take `to_device`, which is what this strategy avoids (it
        // panics between two Wgpu devices): the model must already be there.
        // `DataParallel::check_model` reports this as an error before training.
        let model_devices = learner.model().devices();
        assert!(
            model_devices.iter().all(|d| d == main),
            "HostDataParallel: the model's parameters are on {model_devices:?}, not on the first device of the \
             strategy ({main:?}); create the model there (DataParallel::check_model reports this before training)"
        );
        let mut learner = learner;
        let loaders = split_dataloader(train, &self.devices);
        let valid = valid.to_device(main);
        let TrainingComponents {
            num_epochs,
            mut checkpointer,
            grad_accumulation,
            interrupter,
            mut early_stopping,
            event_processor: mut events,
            event_store,
            ..
        } = components;
        let accumulation = grad_accumulation.unwrap_or(1).max(1);
        for epoch in starting_epoch..=num_epochs {
            let progress = Progress::new(epoch, num_epochs);
            self.train_epoch(&mut learner, &loaders, &progress, accumulation, &mut events, &interrupter);
            if interrupter.should_stop() {
                log::info!("training interrupted: {}", interrupter.get_message().unwrap_or_else(|| "no reason given".into()));
                break;
            }
            Self::valid_epoch(&learner, &valid, &progress, &mut events, &interrupter);
            if let Some(checkpointer) = &mut checkpointer {
                checkpointer.checkpoint(&learner, epoch, &event_store);
            }
            if let Some(early_stopping) = &mut early_stopping
                && early_stopping.should_stop(epoch, &event_store)
            {
                break;
            }
        }
        (learner.model(), events)
    }
}
